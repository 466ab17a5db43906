import csv

from bench.bench_import import csv_rows, write_csv


def test_the_csv_reads_back_as_the_rows_csv_writer_would_write(tmp_path):
    rows = list(csv_rows(2_000, 300, seed=3))
    assert any('"' in text for _, text, _ in rows) and any("," in text for _, text, _ in rows)
    assert len({text for _, text, _ in rows}) == len(rows)
    reference = tmp_path / "reference.csv"
    with reference.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "text", "section"])
        writer.writerows(rows)
    ours = tmp_path / "ours.csv"
    size = write_csv(ours, 2_000, 300, seed=3)
    assert size == ours.stat().st_size

    def read(path):
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.reader(fh))

    assert read(ours) == read(reference)
    assert len(read(ours)) == 2_001
