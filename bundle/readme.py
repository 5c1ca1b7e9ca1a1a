"""`make readme`: rewrite the README's generated blocks from the data and the option tables:
the hardware/preset table (presets/*.yaml), the render-time options (bundle/options.py) and the
container's BUNDLE_* settings (launcher/settings.py)."""
from bundle import options, render
from launcher import settings


def blocks() -> dict[str, str]:
    """marker name -> generated Markdown; each lives between BEGIN/END GENERATED <name> comments."""
    return {"presets table": render.markdown_table(render.load_data()),
            "render options": options.markdown_table(),
            "bundle settings": settings.markdown_table()}


def replace_block(text: str, name: str, content: str) -> str:
    begin = text.index(f"<!-- BEGIN GENERATED {name}")
    begin = text.index("-->", begin) + len("-->")
    end = text.index(f"<!-- END GENERATED {name} -->")
    return text[:begin] + "\n" + content + "\n" + text[end:]


def main() -> None:
    path = render.ROOT / "README.md"
    text = path.read_text()
    for name, content in blocks().items():
        text = replace_block(text, name, content)
    path.write_text(text)


if __name__ == "__main__":
    from bundle import cli
    cli.run(main)
