"""MkDocs hook: render lists and tables that follow a paragraph line directly.

GitHub renders a list or a table that starts right after a paragraph line;
Python-Markdown (MkDocs) needs a blank line first. docs/design.md is a
verbatim copy of the product contract, so instead of editing it the blank
line is added when the page is built.
"""


def on_page_markdown(markdown, page, config, files):
    out = []
    fence = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and out:
            prev = out[-1]
            starts_list = line.startswith("- ") and not prev.startswith(("- ", "  "))
            starts_table = line.startswith("|") and not prev.startswith("|")
            if (starts_list or starts_table) and prev.strip() and not prev.startswith("#"):
                out.append("")
        out.append(line)
    return "\n".join(out)
