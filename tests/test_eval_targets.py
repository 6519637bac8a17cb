"""The targets table (evaluation/targets.py) marks what each method meets, over all samples and per
prompt style, on rows written by hand: a method short on one style fails that style's row."""
from evaluation.targets import reach, targets_section


def text_row(style, group="6", shift=1.0, iou=0.9, done=True, bg=35.0):
    return {"id": f"{style}-{group}-{shift}", "group": group, "status": "ok", "prompt_style": style,
            "centroid_shift": shift, "silhouette_iou": iou, "attribute_success": done, "background_psnr": bg,
            "flags": {}}


def doc(rows):
    return {"samples": rows}


def table(text=None, drag=None):
    now = {"text": text or {}, "drag": drag or {}}
    return "\n".join(targets_section(now, {"text": tuple(now["text"]), "drag": tuple(now["drag"])}))


def line(text: str, start: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith(start))


def test_a_method_that_holds_on_full_captions_only_fails_the_short_rows():
    rows = [text_row("full"), text_row("full", group="7"),
            text_row("short", shift=9.0, iou=0.2, done=False, bg=12.0)]
    out = table(text={"pnp": doc(rows)})
    assert line(out, "| pnp | full | 2 |") == "| pnp | full | 2 | 1.00 ✓ | 0.90 ✓ | 1.00 ✓ | 35.0 ✓ |"
    assert line(out, "| pnp | short | 1 |") == "| pnp | short | 1 | 9.00 ✗ | 0.20 ✗ | 0.00 ✗ | 12.0 ✗ |"
    assert line(out, "| pnp | all | 3 |").count("✗") == 4       # the means: 3.67 px, IoU 0.67, 0.67 done, 27.3 dB
    assert "generic" not in out                                     # no generic samples: no row


def test_the_controls_identity_keeps_everything_and_text_to_image_does_only_the_edit():
    rows = [{**text_row("full", shift=0.0, iou=1.0, done=False, bg=None), "flags": {"background_psnr": "inf"}},
            {**text_row("short", shift=0.0, iou=1.0, done=False, bg=None), "flags": {"background_psnr": "inf"}}]
    out = table(text={"identity": doc(rows)})
    assert line(out, "| identity |") == "| identity | all | 2 | 0.00 ✓ | 1.00 ✓ | 0.00 ✗ | ∞ ✓ |"
    assert "| identity | full" not in out                           # the control gets one row
    drawn = [text_row("full", shift=5.0, iou=0.5, bg=27.0), text_row("short", shift=16.0, iou=0.1, done=False, bg=8.0)]
    out = table(text={"text-to-image": doc(drawn)})                 # by style: what the model draws of each
    assert line(out, "| text-to-image | full |") == "| text-to-image | full | 1 | 5.00 ✗ | 0.50 ✗ | 1.00 ✓ | 27.0 ✗ |"
    assert "| text-to-image | short | 1 |" in out


def test_the_reconstruction_is_a_control_read_by_prompt_style():
    # The input inverted and regenerated: keeps what the model's inversion keeps, does no edit. Its
    # generic row failing the IoU says the model loses the shape there before any method acts.
    rows = [text_row("full", shift=0.2, iou=0.93, done=False, bg=45.0),
            text_row("generic", shift=10.0, iou=0.13, done=False, bg=5.0)]
    out = table(text={"reconstruct": doc(rows)})
    assert line(out, "| reconstruct | full | 1 |") == "| reconstruct | full | 1 | 0.20 ✓ | 0.93 ✓ | 0.00 ✗ | 45.0 ✓ |"
    assert line(out, "| reconstruct | generic | 1 |") == \
        "| reconstruct | generic | 1 | 10.0 ✗ | 0.13 ✗ | 0.00 ✗ | 5.00 ✗ |"
    # a value just under the line never reads as the line: "0.796 ✗", not "0.80 ✗"
    under = line(table(text={"reconstruct": doc([text_row("full", iou=0.7962)])}), "| reconstruct | all |")
    assert under.split(" | ")[4] == "0.796 ✗"


def test_iou_is_read_only_where_the_edit_keeps_the_shape_and_diffuseit_is_held_to_it_alone():
    rows = [text_row("full", group="1", iou=0.1, done=False, bg=20.0), text_row("full", group="6", iou=0.85)]
    out = table(text={"diffuseit": doc(rows)})
    # the shape edit's IoU (0.1, against a new silhouette) is left out; only the IoU is marked
    assert line(out, "| diffuseit | all | 2 |") == "| diffuseit | all | 2 | 1.00 | 0.85 ✓ | 0.50 | 27.5 |"


def test_the_shift_cell_says_how_many_samples_lost_the_object():
    # A deleted object has no centroid: the mean is over the others, and the cell says so.
    rows = [text_row("full", shift=1.0), {**text_row("full", shift=None, iou=0.0), "object_found": False}]
    out = table(text={"pnp": doc(rows)})
    assert line(out, "| pnp | all | 2 |") == "| pnp | all | 2 | 1.00 ✓, 1 lost | 0.45 ✗ | 1.00 ✓ | 35.0 ✓ |"
    assert "lost" not in line(table(text={"pnp": doc(rows[:1])}), "| pnp | all | 1 |")


def test_drag_targets_read_the_median_reach_and_the_worst_outside_psnr():
    rows = [{"status": "ok", "initial_distance": 10.0, "mean_distance_truth": d, "psnr_outside_mask": p,
             "passes": {"unet": u}, "flags": {}} for d, p, u in ((1.0, 40.0, 100), (2.0, 28.0, 120), (9.0, 45.0, 90))]
    rows.append({"status": "ok", "initial_distance": 10.0, "mean_distance_truth": None, "psnr_outside_mask": None,
                 "passes": {"unet": 80}, "flags": {"psnr_outside_mask": "inf"}})
    assert reach(rows[0]) == 0.9 and reach(rows[3]) == 0.0               # a lost object reached nothing
    out = table(drag={"drag": doc(rows)})
    # reaches 0.9, 0.8, 0.1, 0 → median 0.45; PSNR mean of the finite ones 37.7, worst 28, one below 30
    assert line(out, "| drag |") == "| drag | 4 | 0.45 ✗ | 37.7 ✓ | 28.0 | 1 | 95 |"


def test_intervals_wilson_for_success_rates_and_a_seeded_bootstrap_for_means():
    from evaluation.intervals import bootstrap, wilson

    lo, hi = wilson(5, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.237, 0.763)    # the textbook value
    assert wilson(0, 10)[0] == 0.0 and round(wilson(0, 10)[1], 3) == 0.278  # a share of 0 is not sure
    assert wilson(0, 0) is None and bootstrap([]) is None
    values = [1.0, 2.0, 3.0, 10.0]
    assert bootstrap(values) == bootstrap(values)               # the same rows, the same interval
    lo, hi = bootstrap(values)
    assert 1.0 <= lo < 4.0 < hi <= 10.0                          # around the mean (4), inside the range


def test_each_verdict_says_whether_its_interval_is_clear_of_the_line():
    # 24 colour edits, all done, 1 px off, IoU 0.95: every interval clear of the line
    sure = [text_row("full", shift=1.0 + 0.01 * i, iou=0.95, bg=40.0 + i) for i in range(24)]
    out = table(text={"pnp": doc(sure)})
    assert line(out, "| pnp | 24 | ").count("✓") == 4 and "~" not in line(out, "| pnp | 24 | ")
    # 5 of 8 done: 0.62 with the interval 0.31-0.86 straddles the 0.8 line; a verdict on one
    # sample more or less is no evidence
    mixed = [text_row("full", done=i < 5) for i in range(8)]
    cells = line(table(text={"pnp": doc(mixed)}), "| pnp | 8 | ").split(" | ")
    assert cells[4] == "0.62 (0.31–0.86) ~"
    # the controls get no interval row; DiffuseIT only for its IoU
    assert "| identity | 2 |" not in table(text={"identity": doc(sure[:2])})
    dit = line(table(text={"diffuseit": doc(sure)}), "| diffuseit | 24 | ").split(" | ")
    assert dit[2] == "" and dit[3].endswith("✓")


def test_changes_against_the_run_before_are_read_sample_by_sample():
    from evaluation.targets import targets_section

    before = [text_row("full", shift=3.0 + i, done=i % 2 == 0, bg=30.0) for i in range(6)]
    after = [{**r, "centroid_shift": r["centroid_shift"] - 1.0, "attribute_success": True} for r in before]
    for a, b in zip(after, before):
        a["id"] = b["id"]
    out = "\n".join(targets_section({"text": {"pnp": doc(after)}}, {"text": ("pnp",)},
                                    {"text": {"pnp": doc(before)}}))
    row = line(out, "| pnp | 6 | -1.00")
    # every sample 1 px nearer: the change is sure, its interval is the point; three samples turned to done
    assert row.startswith("| pnp | 6 | -1.00 (-1.00…-1.00) |") and "↑3 ↓0" in row
    assert "0.00 (0.00…0.00)" in row                           # background unchanged
    # without a run before there is no table of changes
    assert "What changed" not in "\n".join(targets_section({"text": {"pnp": doc(after)}}, {"text": ("pnp",)}))
