"""`make readme`: rewrite the generated hardware/preset table in README.md from the preset data."""
from bundle import render


def main() -> None:
    path = render.ROOT / "README.md"
    text = path.read_text()
    begin, end = text.index(render.TABLE_BEGIN) + len(render.TABLE_BEGIN), text.index(render.TABLE_END)
    path.write_text(text[:begin] + "\n" + render.markdown_table(render.load_data()) + "\n" + text[end:])


if __name__ == "__main__":
    main()
