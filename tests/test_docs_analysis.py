"""Every Python block of docs/analysis.md runs, in order, in one namespace, in an empty folder."""

import re

import matplotlib

from conftest import REPO


def test_the_analysis_guide_runs(tmp_path, monkeypatch, capsys):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "analysis.md").read_text(), re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/analysis.md", "exec"), namespace)
    assert (tmp_path / "accuracy.png").stat().st_size > 5000
    assert set(namespace["table"].columns) == {1, 5} and set(namespace["table"].index) == {"crn", "protonet"}
    assert len(namespace["cells"]) == 8 and namespace["board"]["seeds"].tolist() == [2, 2, 2, 2]
    assert len(namespace["episodes"]) == 8 * 50
    assert "settings_hash" in capsys.readouterr().out
