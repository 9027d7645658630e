"""MkDocs hook: the site's home page is the README, so the front door is written once.

The README's links point into docs/ (as GitHub renders it); on the site they are relative to docs/ itself.
"""

from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    readme = Path(config["docs_dir"]).parent / "README.md"
    files.append(File.generated(config, "index.md", content=readme.read_text().replace("](docs/", "](")))
    return files
