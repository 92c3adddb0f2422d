"""Every bad input gets a one-line error naming the problem, exit status 2, and no traceback."""

import json

import pytest

from tests.test_lut import make_lut


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ")
    for f in fragments:
        assert f in err, err


@pytest.fixture
def lut_file(tmp_path):
    lut = make_lut(0)
    from latency_lut.spaces import get_space

    space = get_space("fbnet", 64, 0.25)
    from latency_lut.lut import Entry
    from latency_lut.measure import compute_stats

    lut.entries = {s.key: Entry(s, compute_stats([0.1, 0.2, 0.3])) for s in space.unique_specs()}
    return lut.save(tmp_path / "ok.json")


def test_unknown_device(cli):
    assert_one_line_error(cli("build", "--device", "pixle"), "unknown device 'pixle'", "local")


def test_unknown_runtime(cli):
    assert_one_line_error(cli("build", "--runtime", "tensorrt"), "runtime 'tensorrt'", "onnxruntime")


def test_unknown_architecture(cli, lut_file):
    assert_one_line_error(cli("predict", "--lut", str(lut_file), "-a", "fbnet_z"),
                          "unknown architecture 'fbnet_z'", "fbnet_a")


def test_architecture_with_21_choices(cli, lut_file):
    assert_one_line_error(cli("predict", "--lut", str(lut_file), "-a", " ".join(["k3_e1"] * 21)),
                          "21 choices", "22 layers")


def test_choice_that_is_not_a_candidate(cli, lut_file):
    arch = " ".join(["k3_e1"] * 5 + ["k9_e9"] + ["k3_e1"] * 16)
    assert_one_line_error(cli("predict", "--lut", str(lut_file), "-a", arch), "layer 6", "'k9_e9'")


def test_valid_prediction_from_the_fixture_lut(cli, lut_file):
    out = cli("predict", "--lut", str(lut_file), "-a", "fbnet_b", "--json", check=True)
    assert json.loads(out.stdout)["predictions"][0]["total_ms"] > 0


@pytest.mark.parametrize("damage, fragment", [
    (lambda t: t[: len(t) // 3], "truncated"),
    (lambda t: t.replace('"entries"', '"entries" ]', 1), "corrupt"),
    (lambda t: t.replace('"schema_version": 1', '"schema_version": 7', 1), "schema_version 7 is not supported"),
    (lambda t: "", "truncated"),
])
def test_bad_lut_files(cli, lut_file, tmp_path, damage, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(damage(lut_file.read_text()))
    for cmd in (["show", str(bad)], ["predict", "--lut", str(bad), "-a", "fbnet_a"]):
        assert_one_line_error(cli(*cmd), "bad.json", fragment)


def test_missing_lut_file(cli, tmp_path):
    assert_one_line_error(cli("show", str(tmp_path / "nope.json")), "nope.json does not exist")


def test_unwritable_output_path(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(cli("build", "-o", "afile/lut.json"), "afile is a file, not a folder")
    assert_one_line_error(cli("build", "-o", "/proc/lut.json"), "/proc/lut.json is not writable")
    assert_one_line_error(cli("build", "-o", str(tmp_path)), "is a directory")


def test_usage_errors_are_one_line_too(cli):
    assert_one_line_error(cli("build", "--resolution", "abc"), "--resolution")
    assert_one_line_error(cli("predict", "--arch", "fbnet_a"), "--lut")
    assert_one_line_error(cli("build", "--runs", "1"), "--runs", "3<=x")
    assert_one_line_error(cli("frobnicate"), "No such command")


def test_help_everywhere(cli):
    for cmd in ([], ["build"], ["devices"], ["show"], ["predict"]):
        out = cli(*cmd, "--help", check=True).stdout
        assert "Usage: fbnet-lut" in out


def test_devices_lists_the_builtin_local_descriptor(cli):
    devs = json.loads(cli("devices", "--json", check=True).stdout)
    local = next(d for d in devs if d["name"] == "local")
    assert local["kind"] == "local" and "litert" in local["runtimes"]
