"""Sensor sources: CSV replay, 1-Wire device files, command output, the simulator."""
from __future__ import annotations

import sys

import pytest

from edge.sources import SourceError
from edge.sources import build_source


def test_csv_replays_a_column_and_loops(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("timestamp,value\n1,20.5\n2,bad\n3,21.0\n")
    source = build_source(f"csv:{path}")
    assert [source.read() for _ in range(3)] == [20.5, 21.0, 20.5]
    named = build_source(f"csv:{path}#timestamp")
    assert named.read() == 1.0


@pytest.mark.parametrize("name, text, value", [
    ("temperature", "23125\n", 23.125),
    ("w1_slave", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=-1250\n", -1.25),
    ("reading.txt", "  42.5 C\n", 42.5),
])
def test_device_files(tmp_path, name, text, value):
    path = tmp_path / name
    path.write_text(text)
    assert build_source(f"file:{path}").read() == pytest.approx(value)


def test_device_file_errors_are_source_errors(tmp_path):
    bad_crc = tmp_path / "w1_slave"
    bad_crc.write_text("72 01 : crc=57 NO\n72 01 t=21000\n")
    for spec in (f"file:{bad_crc}", f"file:{tmp_path / 'missing'}"):
        with pytest.raises(SourceError):
            build_source(spec).read()


def test_command_output_and_failures():
    assert build_source(f"cmd:{sys.executable} -c 'print(\"t = 19.75\")'").read() == 19.75
    with pytest.raises(SourceError):
        build_source(f"cmd:{sys.executable} -c 'raise SystemExit(3)'").read()
    with pytest.raises(SourceError):
        build_source("cmd:/nonexistent/sensor").read()


def test_simulated_faults_are_injectable():
    clean = build_source("sim:noise=0,amplitude=0,base=50")
    spiked = build_source("sim:noise=0,amplitude=0,base=50,faults=spike:0:60:30")
    assert clean.read() == 50.0
    assert spiked.read() == 80.0
    with pytest.raises(SourceError):
        build_source("sim:faults=dropout:0:60").read()
    with pytest.raises(ValueError):
        build_source("sim:colour=red")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown source kind"):
        build_source("ouija:board")
