"""The progress bars fit 80 columns and say what was sent and skipped, the
rate and the time left, whatever the numbers."""

from tqdm import tqdm

from depot_client.upload import BAR_FORMAT, short_bytes


def test_bar_fits_80_columns():
    for n, total, sent, skipped, elapsed in [
        (0, 0, 0, 0, 0.0),
        (512 << 20, 1 << 30, 300 << 20, 212 << 20, 30.0),
        (999 << 40, 1000 << 40, 999 << 40, 999 << 40, 360000.0),
    ]:
        for desc in ("a.bin", "a-very-long-file-name-indeed.iso"[:13] + "~"):
            line = tqdm.format_meter(n, total, elapsed, ncols=80, prefix=desc, bar_format=BAR_FORMAT,
                                     postfix=f"sent {short_bytes(sent)} skip {short_bytes(skipped)}",
                                     unit="B", unit_scale=True, unit_divisor=1024)
            assert len(line) <= 80, (len(line), line)
            assert "sent" in line and "skip" in line and "ETA" in line and "/s" in line, line


def test_short_bytes():
    assert short_bytes(0) == "0B"
    assert short_bytes(999) == "999B"
    assert short_bytes(1536) == "1.5K"
    assert short_bytes(5 << 40) == "5.0T"
