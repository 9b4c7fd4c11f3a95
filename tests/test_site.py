"""``bench site``: the static results site, built from a tiny real run, a committed record and the card; its HTML
checked as files, then in headless Chromium (pages load without errors, tables sort, figures render)."""

from __future__ import annotations

import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import Browser, find_chromium, install_chromium
from conftest import REPO, tiny_run_flags
from fewshot_bench.cli.main import main
from fewshot_bench.reporting.markdown_html import markdown_to_html

RECORD = REPO / "results" / "records" / "omniglot-curve-cpu"  # two cells and context rows (floors): small
CARD = REPO / "results" / "REPRODUCTION.md"
EVIL = "<script>alert('host')</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fewshot_bench.config import merge
    from fewshot_bench.engine.runner import run

    root = tmp_path_factory.mktemp("site")
    run(merge(None, tiny_run_flags(root, methods=["protonet", "matchingnet"], shots=[1], train_episodes=2,
                                   test_episodes=4)))
    # A host name with markup: the page must show it as text.
    environment = root / "runs" / "tiny" / "environment.json"
    environment.write_text(json.dumps({**json.loads(environment.read_text()), "host": EVIL}))
    out = root / "out" / "site"
    assert main(["site", str(out), "--runs", str(root / "runs"), "--records", str(RECORD), "--card", str(CARD)]) == 0
    return out


class Links(HTMLParser):
    """Every link and resource of a page: (tag, attribute, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.found.append((tag, name, value))


def links(page: Path) -> list[tuple[str, str, str]]:
    parser = Links()
    parser.feed(page.read_text())
    return parser.found


# ------------------------------------------------------------------------------------------------ the files
def test_the_site_has_the_leaderboard_a_page_per_run_and_per_card_section(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert pages[:2] == ["card.html", "card/01-Omniglot-Vinyals-split-28-28.html"]
    assert len([p for p in pages if p.startswith("card/")]) == 3  # the card's three sections
    assert {"index.html", "runs/tiny.html", "runs/omniglot-curve-cpu.html"} <= set(pages)
    index = (site / "index.html").read_text()
    # One row per variant and setting: the tiny run's two methods, the record's two and its floor rows.
    body = index.split('<table class="sortable compact" id="leaderboard">')[1].split("</table>")[0]
    rows = re.findall(r"<tr data-dataset=\"([^\"]+)\" data-way=\"(\d+)\" data-shot=\"(\d+)\" data-method=\"([^\"]+)\"",
                      body)
    assert {r[0] for r in rows} == {"synthetic-fer", "omniglot"}
    assert {("synthetic-fer", "protonet"), ("synthetic-fer", "matchingnet"), ("omniglot", "protonet"),
            ("omniglot", "relationnet")} <= {(r[0], r[3]) for r in rows}
    assert 'class="context"' in body and "floor" in body
    assert "± episodes" in index and "± seeds" in index
    assert 'href="runs/tiny.html"' in index and 'href="runs/omniglot-curve-cpu.html"' in index
    for key in ("dataset", "way", "shot", "method"):
        assert f'<select data-filter="{key}">' in index


def test_the_leaderboard_says_whether_each_row_is_what_todays_code_computes(site):
    """The code column: the tiny run, made by today's code, is current; the committed record's rows carry the
    state its fingerprints give (with why, on hover); context rows, computed by no method variant, have none."""
    index = (site / "index.html").read_text()
    body = index.split('<table class="sortable compact" id="leaderboard">')[1].split("</table>")[0]
    assert "<th data-type=\"text\">code</th>" in body and "whether a row's cells are what today's code computes" in index
    rows = body.split("<tr ")[1:]  # the data rows (the header's is a bare <tr>)
    states = {}
    for row in rows:
        dataset = re.search(r'data-dataset="([^"]+)"', row).group(1)
        method = re.search(r'data-method="([^"]+)"', row).group(1)
        code = re.search(r'<td class="code ([a-z]*)" title="([^"]*)">([^<]*)</td>', row)
        states[(dataset, method, 'class="context"' in row)] = code.group(1, 2, 3)
    assert states[("synthetic-fer", "protonet", False)] == ("current", "", "current")
    assert states[("synthetic-fer", "matchingnet", False)] == ("current", "", "current")
    record = states[("omniglot", "protonet", False)]
    assert record[2] in ("current (refactored)", "stale", "unverified") and record[0] == record[2].split()[0]
    assert record[1]  # why: the fingerprint it was compared with, or what is missing
    assert all(code == ("", "", "") for (_, _, context), code in states.items() if context)


def test_a_stale_row_is_marked_on_the_leaderboard(tmp_path):
    from fewshot_bench.fingerprint.status import STALE, RecordState
    from fewshot_bench.reporting.site import board_entries, build_site, collect_pages

    class Stale:
        """Every row stale, as when today's code behaves differently from the code that computed it."""

        def prepare(self, labels):
            self.labels = sorted(set(labels))

        def row_state(self, records):
            assert records  # the row's own cells
            return RecordState(STALE, f"{records[0]['label']} behaves differently")

    states = Stale()
    entries = board_entries(collect_pages([], [RECORD]), states)
    assert states.labels == ["protonet", "relationnet"]
    assert {e["code"] for e in entries if not e.get("context")} == {STALE}
    site = build_site(tmp_path / "site", [], [RECORD], None, states)
    index = (site.out / "index.html").read_text()
    assert '<td class="code stale" title="protonet behaves differently">stale</td>' in index


def test_a_run_page_has_its_table_figures_config_and_provenance(site):
    from fewshot_bench.results.leaderboard import load_cells

    page = (site / "runs" / "tiny.html").read_text()
    cell = next(c for c in load_cells([site.parent.parent / "runs" / "tiny"]) if c["label"] == "protonet")
    assert "Accuracy (%) on 3-way episodes" in page and "identical for every method (checked by their sha)" in page
    assert "run_id: tiny" in page and "methods:" in page  # the config, as text
    assert cell["code_version"] in page and cell["settings_hash"] in page and cell["cell"] in page
    figures = [value for tag, _, value in links(site / "runs" / "tiny.html") if tag == "img"]
    assert {Path(f).name for f in figures} == {"accuracy_vs_shots.png", "training_curves.png",
                                               "per_class_accuracy.png"}
    for figure in figures:
        assert (site / "runs" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = (site / "runs" / "omniglot-curve-cpu.html").read_text()
    assert "committed record" in record and 'class="context"' in record and "floor" in record
    assert "accuracy_vs_budget.png" in record  # the record's budget curve


def test_every_link_resolves_and_nothing_comes_from_the_network(site):
    for page in site.rglob("*.html"):
        for tag, attribute, value in links(page):
            assert not re.match(r"(https?:)?//", value) or (tag == "a" and attribute == "href"), (page, value)
            if value.startswith(("#", "data:", "http://", "https://")):
                continue
            target = (page.parent / value.split("#")[0]).resolve()
            assert target.is_file() and site.resolve() in target.parents, (page, value)
    for asset in ("site.css", "site.js"):
        assert not re.search(r"https?://|@import|fetch\(|XMLHttpRequest", (site / asset).read_text()), asset
    card = (site / "card" / "01-Omniglot-Vinyals-split-28-28.html").read_text()
    assert '<a href="../runs/omniglot-curve-cpu.html"><code>results/records/omniglot-curve-cpu</code></a>' in card


def test_text_from_records_is_escaped(site):
    page = (site / "runs" / "tiny.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;" in page
    html = str(markdown_to_html("A <b>bold</b> **claim** with `<i>code</i>` and [a link](x.html).\n\n"
                                "| method | mean |\n|---|---:|\n| a<b | 1.50 ± 0.2 |\n| c | — |\n\n"
                                "- item `x`\n  continued\n\n  ```\n  bench run <x>\n  ```\n- second"))
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "<strong>claim</strong>" in html
    assert "<code>&lt;i&gt;code&lt;/i&gt;</code>" in html and '<a href="x.html">a link</a>' in html
    assert '<td data-value="1.50" class="num">1.50 ± 0.2</td>' in html and "<td data-value=\"a&lt;b\">a&lt;b</td>" in html
    assert "<li><span>item <code>x</code> continued</span> <pre><code>bench run &lt;x&gt;</code></pre></li>" in html
    assert "<li><span>second</span></li>" in html


def test_a_rebuild_replaces_the_site_and_bad_inputs_are_one_line_errors(site, tmp_path, capsys, monkeypatch):
    earlier = tmp_path / "earlier"
    shutil.copytree(site, earlier)
    stale = earlier / "runs" / "left-over.html"
    stale.write_text("from an earlier build")
    runs = site.parent.parent / "runs"
    monkeypatch.chdir(tmp_path)  # no results/ here: no default records or card
    assert main(["site", str(earlier), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {earlier}: 2 pages (1 run and record pages), 6 figure files" in out and "index.html" in out
    assert not stale.exists() and not (earlier / "card.html").exists()  # replaced by the new build as a whole
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a site")
    for argv, message in (
            (["site", str(tmp_path / "a"), "--runs", str(tmp_path / "nope")], "--runs"),
            (["site", str(tmp_path / "a"), "--runs", str(tmp_path / "empty"), "--records", str(tmp_path / "empty")],
             "no run folder or record with finished cells"),
            (["site", str(tmp_path / "mine"), "--runs", str(runs)], "is not a site written by `bench site`"),
            (["site", str(tmp_path / "a"), "--runs", str(runs), "--card", str(tmp_path / "card.md")], "--card")):
        assert main(argv) == 3
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert (tmp_path / "mine" / "notes.txt").is_file() and not (tmp_path / "a").exists()
    assert not list(tmp_path.glob(".a-*")) and not list(tmp_path.glob(".mine-*"))  # no staging folder left


# ---------------------------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="session")
def chromium():
    executable = find_chromium()
    if executable is None:
        executable, why = install_chromium()
        if executable is None:
            pytest.skip(f"headless Chromium is needed for the browser tests and could not be installed: {why}")
    browser = Browser(executable)
    yield browser
    browser.close()


def test_every_page_loads_without_errors_or_network_and_every_figure_renders(site, chromium):
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        tab = chromium.open()
        tab.load(page.as_uri())
        assert tab.errors() == [], page
        assert tab.evaluate("document.title").endswith("fewshot-bench results")
        images = tab.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                              "i.naturalWidth, i.naturalHeight])")
        assert all(complete and width > 100 and height > 100 for _, complete, width, height in images), images
        if page.parent.name == "runs":
            assert len(images) >= 3, page
        assert all(url.startswith(("file:", "data:")) for url in tab.requests()), tab.requests()
        tab.close()


def _column(tab, table: str, index: int) -> list[str]:
    return tab.evaluate(f"Array.from(document.querySelectorAll('#{table} tbody tr')).filter(r => !r.hidden)"
                        f".map(r => r.cells[{index}].textContent.trim())")


def test_clicking_a_header_sorts_the_table_and_the_filters_narrow_it(site, chromium):
    tab = chromium.open()
    tab.load((site / "index.html").as_uri())
    headers = tab.evaluate("Array.from(document.querySelectorAll('#leaderboard th')).map(h => h.textContent.trim())")
    mean, dataset = headers.index("mean %"), headers.index("dataset")
    before = [float(v) for v in _column(tab, "leaderboard", mean)]
    tab.click("#leaderboard th[data-key=mean]")
    ascending = [float(v) for v in _column(tab, "leaderboard", mean)]
    assert ascending == sorted(before) and ascending != before
    assert tab.evaluate("document.querySelector('#leaderboard th[data-key=mean]').getAttribute('aria-sort')") == \
        "ascending"
    tab.click("#leaderboard th[data-key=mean]")
    assert [float(v) for v in _column(tab, "leaderboard", mean)] == sorted(before, reverse=True)
    tab.click(f"#leaderboard th:nth-child({dataset + 1})")  # text: alphabetical
    names = _column(tab, "leaderboard", dataset)
    assert names == sorted(names) and names[0] == "omniglot" and names[-1] == "synthetic-fer"
    tab.evaluate("(() => { const s = document.querySelector('select[data-filter=dataset]'); s.value = 'omniglot'; "
                 "s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    assert set(_column(tab, "leaderboard", dataset)) == {"omniglot"}
    shown = len(_column(tab, "leaderboard", dataset))
    assert tab.evaluate("document.querySelector('.filters .count').textContent") == f"{shown} of {len(names)} rows"
    assert tab.evaluate("location.hash") == "#dataset=omniglot"
    # The card's tables sort too (numbers as numbers: "not run" rows last).
    tab.load((site / "card" / "01-Omniglot-Vinyals-split-28-28.html").as_uri())
    tab.click(".markdown table th:nth-child(6)")  # ours
    ours = tab.evaluate("Array.from(document.querySelector('.markdown table').tBodies[0].rows)"
                        ".map(r => r.cells[5].getAttribute('data-value'))")
    numbers = [float(v) for v in ours if v]
    assert len(numbers) > 10 and numbers == sorted(numbers) and ours[len(numbers):] == [""] * (len(ours) - len(numbers))
    # A filtered view opened from its address.
    tab.load((site / "index.html").as_uri() + "#dataset=synthetic-fer&shot=1")
    assert set(_column(tab, "leaderboard", dataset)) == {"synthetic-fer"}
    assert tab.evaluate("document.querySelector('select[data-filter=shot]').value") == "1"
    assert tab.errors() == []
    tab.close()


def test_a_screenshot_of_the_leaderboard_shows_its_content(site, chromium):
    from PIL import Image

    tab = chromium.open(width=1280, height=800)
    tab.load((site / "index.html").as_uri())
    png = tab.screenshot()
    tab.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1280, 800)
    colours = image.getcolors(maxcolors=1 << 20)
    # Text, the header band, table lines: many colours, and no colour (the white page) covering nearly everything.
    assert len(colours) > 200 and max(count for count, _ in colours) < 0.9 * 1280 * 800
    band = image.crop((0, 0, 1280, 30)).getcolors(maxcolors=1 << 20)
    assert max(band)[1] == (0x16, 0x32, 0x4F)  # the navigation bar is drawn: the stylesheet was loaded
