"""The paper's Tables 1 and 2 as data, exactly as printed, so that our numbers sit beside theirs.

Table 1 (Section 4.1): PSNR / SSIM on the Y channel of Set5, Set14, BSD100 (B100) and Urban100,
each image degraded once by an unknown random kernel, at x3, x3.6 and x4. Table 2 (Section 4.2):
the ablation of the two designs on the DIV2K validation set at x3. (The text lists DIV2K-valid
among the evaluation sets, but Table 1 has no DIV2K column; DIV2K appears only in Table 2.)

Methods are named as in ``asbsr.config.METHODS`` (plus ``"bicubic"``) so that a row of the paper
and a row of ours share a key; ``LABELS`` gives the paper's names. Values are transcribed digit for
digit from the paper text; ``NOTES`` lists the cells that cannot be read at face value:

* MetaSR at x3.6: the Set5 and Set14 cells look swapped (25.8354 / 0.7130 under Set5 is below
  Bicubic's 27.0250, while 28.6290 / 0.8266 under Set14 is 2.7 dB above every other method's
  Set14 PSNR and close to the Set5 values of the others). ``table1(swap_fixed=True)`` exchanges
  them; the default returns them as printed.
* LTE at x4 on BSD100: printed ``25.7677 0/ .6741``, a typesetting slip read as 0.6741.
* LIIF and LTE at x3.6 on Set14 both print PSNR 25.9306 (a tie as printed).
"""

from __future__ import annotations

from typing import Sequence

from asbsr.lab.benchmark import format_table

SETS = ("Set5", "Set14", "BSD100", "Urban100")
SCALES = (3.0, 3.6, 4.0)
# Rows of Table 1 in the paper's order.
TABLE1_METHODS = ("bicubic", "dcls_liif", "dcls_lte", "metasr", "liif", "lte", "srno", "ours")
LABELS = {
    "bicubic": "Bicubic", "dcls_liif": "DCLS+LIIF", "dcls_lte": "DCLS+LTE", "metasr": "MetaSR",
    "liif": "LIIF", "lte": "LTE", "srno": "SRNO", "ours": "Ours",
    "implicit_only": "implicit only", "cycle_only": "cycle only",
}


def _row(*cells: float) -> dict[str, tuple[float, float]]:
    """Eight numbers in the paper's column order -> ``{set: (psnr, ssim)}``."""
    return {name: (cells[2 * i], cells[2 * i + 1]) for i, name in enumerate(SETS)}


# TABLE1[scale][method][set] = (PSNR dB, SSIM), as printed.
TABLE1: dict[float, dict[str, dict[str, tuple[float, float]]]] = {
    3.0: {
        "bicubic": _row(27.6694, 0.7655, 24.8790, 0.6265, 25.4217, 0.6134, 22.3680, 0.6059),
        "dcls_liif": _row(27.4310, 0.8231, 24.2159, 0.7032, 24.7017, 0.6798, 22.1304, 0.6924),
        "dcls_lte": _row(27.4674, 0.8222, 24.3413, 0.7056, 24.8001, 0.6812, 22.2755, 0.6948),
        "metasr": _row(29.1847, 0.8528, 25.9156, 0.7272, 26.5609, 0.7065, 23.3855, 0.6980),
        "liif": _row(29.3787, 0.8630, 25.9210, 0.7325, 26.6672, 0.7140, 23.3933, 0.7049),
        "lte": _row(29.4247, 0.8644, 25.8921, 0.7327, 26.6800, 0.7145, 23.3823, 0.7057),
        "srno": _row(29.2663, 0.8635, 25.8981, 0.7391, 26.5954, 0.7196, 23.2896, 0.7078),
        "ours": _row(29.5681, 0.8696, 25.9791, 0.7423, 26.8306, 0.7242, 23.5128, 0.7131),
    },
    3.6: {
        "bicubic": _row(27.0250, 0.7263, 24.7365, 0.6700, 24.7794, 0.5804, 21.7952, 0.5680),
        "dcls_liif": _row(27.0487, 0.8141, 24.6793, 0.7101, 23.8700, 0.6448, 21.2705, 0.6439),
        "dcls_lte": _row(26.9578, 0.8129, 24.6589, 0.7066, 23.8323, 0.6425, 21.3129, 0.6437),
        "metasr": _row(25.8354, 0.7130, 28.6290, 0.8266, 25.5168, 0.6636, 22.4664, 0.6490),
        "liif": _row(28.7843, 0.8395, 25.9306, 0.7212, 25.5267, 0.6702, 22.3859, 0.6549),
        "lte": _row(28.8638, 0.8435, 25.9306, 0.7219, 25.5356, 0.6707, 22.3626, 0.6551),
        "srno": _row(28.4700, 0.8371, 25.8687, 0.7245, 25.4639, 0.6751, 22.3067, 0.6564),
        "ours": _row(29.1043, 0.8475, 25.9760, 0.7275, 25.5867, 0.6763, 22.4304, 0.6614),
    },
    4.0: {
        "bicubic": _row(26.7935, 0.7173, 25.0350, 0.6174, 24.9124, 0.5868, 22.0827, 0.5763),
        "dcls_liif": _row(26.4664, 0.7894, 24.3381, 0.6823, 23.9654, 0.6458, 21.9636, 0.6673),
        "dcls_lte": _row(26.3301, 0.7857, 24.2402, 0.6789, 23.8380, 0.6406, 21.9944, 0.6675),
        "metasr": _row(28.5168, 0.8147, 26.0609, 0.7059, 25.7275, 0.6666, 22.9445, 0.6577),
        "liif": _row(29.0035, 0.8346, 26.2131, 0.7143, 25.7439, 0.6732, 23.1839, 0.6703),
        "lte": _row(29.2171, 0.8402, 26.3126, 0.7173, 25.7677, 0.6741, 23.0556, 0.6765),
        "srno": _row(28.8063, 0.8329, 26.1791, 0.7193, 25.6898, 0.6774, 23.0131, 0.6720),
        "ours": _row(29.3732, 0.8440, 26.4834, 0.7243, 25.8560, 0.6811, 23.2178, 0.6804),
    },
}

# Table 2 (DIV2K validation, x3): method -> (implicit degradation, cycle, PSNR, SSIM).
TABLE2: dict[str, tuple[bool, bool, float, float]] = {
    "ours": (True, True, 29.8102, 0.8312),
    "cycle_only": (False, True, 29.6253, 0.8293),
    "implicit_only": (True, False, 29.6870, 0.8279),
    "lte": (False, False, 29.5949, 0.8246),
}
TABLE2_SET, TABLE2_SCALE = "DIV2K-valid", 3.0

# Cells of Table 1 that cannot be read at face value: (method, set, scale) -> what and why.
SWAPPED = (("metasr", "Set5", 3.6), ("metasr", "Set14", 3.6))
NOTES: dict[tuple[str, str, float], str] = {
    ("metasr", "Set5", 3.6): "printed 25.8354 / 0.7130: looks swapped with the Set14 cell "
                             "(below Bicubic's 27.0250 on Set5, while the Set14 cell is a Set5-like value)",
    ("metasr", "Set14", 3.6): "printed 28.6290 / 0.8266: looks swapped with the Set5 cell "
                              "(2.7 dB above every other Set14 PSNR at x3.6)",
    ("lte", "BSD100", 4.0): "printed '25.7677 0/ .6741', a typesetting slip; read as 25.7677 / 0.6741",
    ("liif", "Set14", 3.6): "the same PSNR 25.9306 as LTE's cell (a tie as printed)",
    ("lte", "Set14", 3.6): "the same PSNR 25.9306 as LIIF's cell (a tie as printed)",
}


def table1(swap_fixed: bool = False) -> dict[float, dict[str, dict[str, tuple[float, float]]]]:
    """A copy of ``TABLE1``; with ``swap_fixed`` MetaSR's x3.6 Set5 and Set14 cells exchanged."""
    table = {s: {m: dict(cells) for m, cells in rows.items()} for s, rows in TABLE1.items()}
    if swap_fixed:
        (method, set_a, scale), (_, set_b, _) = SWAPPED
        row = table[scale][method]
        row[set_a], row[set_b] = row[set_b], row[set_a]
    return table


def table1_rows(scale: float, swap_fixed: bool = False,
                methods: Sequence[str] = TABLE1_METHODS) -> list[dict]:
    """Rows for ``benchmark.format_table``: ``{"method": label, "<set> PSNR": v, "<set> SSIM": v}``.

    A method with a noted cell at this scale gets a ``†`` after its label."""
    table = table1(swap_fixed)[scale]
    rows = []
    for method in methods:
        noted = any(key[0] == method and key[2] == scale for key in NOTES)
        row = {"method": LABELS[method] + (" †" if noted else "")}
        for name in SETS:
            row[f"{name} PSNR"], row[f"{name} SSIM"] = table[method][name]
        rows.append(row)
    return rows


def table1_markdown(scale: float, swap_fixed: bool = False) -> str:
    """The paper's Table 1 at one scale as Markdown, best in **bold**, second in _italics_
    (the paper's red and blue), four decimals as printed, with the notes of that scale below."""
    columns = [f"{name} {metric}" for name in SETS for metric in ("PSNR", "SSIM")]
    text = format_table(table1_rows(scale, swap_fixed), columns,
                        digits={c: 4 for c in columns})
    notes = [f"- † {LABELS[m]} {name} x{s:g}: {note}" for (m, name, s), note in NOTES.items() if s == scale]
    if swap_fixed and scale == SWAPPED[0][2]:
        notes.append("- MetaSR's Set5 and Set14 cells are shown exchanged back (swap_fixed=True).")
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def table2_rows() -> list[dict]:
    """Rows of Table 2 for ``format_table``, labelled by which designs are on."""
    rows = []
    for method, (implicit, cycle, psnr, ssim) in TABLE2.items():
        label = f"implicit {'✓' if implicit else '-'} cycle {'✓' if cycle else '-'} ({method})"
        rows.append({"variant": label, "PSNR": psnr, "SSIM": ssim})
    return rows


def table2_markdown() -> str:
    """The paper's Table 2 (DIV2K validation, x3) as Markdown."""
    return format_table(table2_rows(), ["PSNR", "SSIM"], row_key="variant", digits={"PSNR": 4})


def ours_rank(scale: float, set_name: str, metric: str = "PSNR", swap_fixed: bool = True) -> int:
    """1 + the number of Table 1 methods strictly better than "Ours" in one cell."""
    index = 0 if metric.upper() == "PSNR" else 1
    cells = table1(swap_fixed)[scale]
    ours = cells["ours"][set_name][index]
    return 1 + sum(cells[m][set_name][index] > ours for m in cells if m != "ours")
