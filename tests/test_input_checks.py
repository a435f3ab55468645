"""New pairs checked against the model before any work (comir.apply.checks; the CLI's exit 2)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
import torch

from comir.__main__ import main
from comir.apply.checks import MAX_EXTENT_RATIO, RANGE_FACTOR, check_pair, range_problem
from comir.apply.folder import register_batch
from comir.apply.model import MIN_REGISTER_PX, TrainedModel
from comir.data.convert import RecordOptions
from comir.imaging.preprocess import input_statistics, modality_statistics
from comir.io import InputError, reject_unknown_keys
from comir.network.checkpoint import save_checkpoint
from comir.network.model import Tiramisu, TiramisuConfig

MODALITIES = {"A": {"name": "fine", "channels": 1}, "B": {"name": "coarse", "channels": 1}}
SKIPPED = "range check of new images is skipped"


def _networks():
    torch.manual_seed(0)
    small = dict(in_channels=1, out_channels=1, init_filters=4, down_blocks=(1,), bottleneck=1, dropout=0.0)
    return {slot: Tiramisu(TiramisuConfig(**small)) for slot in MODALITIES}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained model file with the input statistics of training images in [0, 1]."""
    rng = np.random.default_rng(0)
    training = [tuple(rng.random((1, 32, 32), dtype=np.float32) for _ in MODALITIES) for _ in range(4)]
    path = tmp_path_factory.mktemp("model") / "comir.pt"
    save_checkpoint(path, _networks(), {"modalities": MODALITIES, "input_statistics": modality_statistics(training)})
    return path


@pytest.fixture(scope="module")
def old_model_file(tmp_path_factory):
    """The same networks in a model file written before the statistics were recorded."""
    path = tmp_path_factory.mktemp("old") / "comir.pt"
    save_checkpoint(path, _networks(), {"modalities": MODALITIES})
    return path


def write(folder, name, image):
    path = folder / name
    tifffile.imwrite(path, image)
    return path


def texture(size, scale=255.0, dtype=np.uint8, seed=1):
    return (np.random.default_rng(seed).random((size, size)) * scale).astype(dtype)


def cli(model, reference, floating, out, *extra):
    return main(["register", "--model", str(model), "--reference", str(reference), "--floating", str(floating),
                 "--reference-modality", "fine", "--out", str(out), "--method", "fft_search", *extra])  # fmt: skip


def refused(capsys, out, *fragments):
    """The command refused (exit 2 checked by the caller) with every fragment in its message, writing nothing."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and not out.exists(), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_statistics_are_percentiles_and_extremes_of_the_network_input():
    values = np.arange(1001, dtype=np.float32).reshape(1, 7, 143) / 1000  # 0, 0.001, ..., 1
    stats = input_statistics([values[:, :, :70], values[:, :, 70:]])
    assert set(stats) == {"p0.1", "p50", "p99.9", "min", "max"}
    assert stats["min"] == 0.0 and stats["max"] == 1.0
    assert stats["p50"] == pytest.approx(0.5) and stats["p99.9"] == pytest.approx(0.999)
    mask = np.zeros((7, 143), bool)
    mask[0] = True  # the first 143 values
    assert input_statistics([values], [mask])["max"] < 0.2  # only the valid pixels count


def test_a_model_file_records_and_returns_the_statistics(model_file, old_model_file, caplog):
    model = TrainedModel.load(model_file)
    assert set(model.statistics) == {"A", "B"} and model.statistics["A"]["p99.9"] == pytest.approx(1.0, abs=0.01)
    with caplog.at_level(logging.WARNING):
        assert TrainedModel.load(old_model_file).statistics is None
    assert SKIPPED in caplog.text


def test_too_small_images_are_refused_naming_the_file_size_and_minimum(tmp_path, model_file, capsys):
    reference, floating = write(tmp_path, "ref.tif", texture(3)), write(tmp_path, "flo.tif", texture(3, seed=2))
    out = tmp_path / "out"
    assert cli(model_file, reference, floating, out, "--masks", "none") == 2
    refused(capsys, out, "ref.tif is 3x3 px", f"{MIN_REGISTER_PX} px per side")


def test_extents_far_apart_are_refused_unless_the_pixel_sizes_match_them(tmp_path, model_file, capsys):
    reference = write(tmp_path, "big.tif", texture(2000)[:200])  # 200x2000 px
    floating = write(tmp_path, "small.tif", texture(64))
    out = tmp_path / "out"
    assert cli(model_file, reference, floating, out) == 2
    refused(capsys, out, "big.tif is 200x2000 px", "small.tif is 64x64 px", "--pixel-sizes", "crop")
    model = TrainedModel.load(model_file)
    # 2000 px at 0.032 units/px and 64 px at 1 unit/px: the same physical extent.
    check_pair(model, reference, floating, "fine", pixel_sizes={"fine": 0.032, "coarse": 1.0})
    with pytest.raises(InputError, match=r"physical extents .* differ by a factor 15\.6"):  # 1000 vs 64
        check_pair(model, floating, reference, "fine", pixel_sizes={"fine": 1.0, "coarse": 0.5})
    assert MAX_EXTENT_RATIO == 4.0


@pytest.mark.parametrize(("scale", "side"), [(60000.0, "above"), (0.01, "below")])
def test_intensities_far_outside_the_training_range_are_refused(tmp_path, model_file, capsys, scale, side):
    reference = write(tmp_path, "ref.tif", texture(64))
    floating = write(tmp_path, "flo.tif", texture(64, scale, np.float32, seed=2))
    out = tmp_path / "out"
    assert cli(model_file, reference, floating, out) == 2
    trained = "training images spanned 0.0003373..0.9992"  # both ranges named
    refused(capsys, out, "flo.tif", "its network input spans", trained, f"{RANGE_FACTOR:g}x {side}", "--rescale")


def test_rescale_maps_an_image_into_the_training_range_and_registers_it(tmp_path, model_file, capsys):
    reference = write(tmp_path, "ref.tif", texture(64))
    floating = write(tmp_path, "flo.tif", texture(64, 60000.0, np.float32, seed=2))
    model = TrainedModel.load(model_file)
    checked = check_pair(model, reference, floating, "fine", masks="none", rescale=True)
    trained, prepared = model.statistics["B"], checked.inputs[0]["B"]
    assert trained["min"] <= prepared.min() and prepared.max() <= trained["max"]
    assert input_statistics([prepared])["p99.9"] == pytest.approx(trained["p99.9"], rel=1e-3)
    assert cli(model_file, reference, floating, tmp_path / "out", "--masks", "none", "--rescale") in (0, 1)
    assert (tmp_path / "out" / "transform.csv").exists()


def test_an_old_model_file_without_statistics_still_registers(tmp_path, old_model_file, capsys, caplog):
    reference = write(tmp_path, "ref.tif", texture(64))
    floating = write(tmp_path, "flo.tif", texture(64, 60000.0, np.float32, seed=2))
    with caplog.at_level(logging.WARNING):
        assert cli(old_model_file, reference, floating, tmp_path / "out", "--masks", "none") in (0, 1)
    assert SKIPPED in caplog.text and (tmp_path / "out" / "transform.csv").exists()
    out = tmp_path / "rescaled"
    assert cli(old_model_file, reference, floating, out, "--rescale") == 2  # nothing to rescale to
    refused(capsys, out, "does not record")


def test_the_range_check_compares_log1p_modalities_in_linear_intensity():
    trained = {"p0.1": 0.0, "p99.9": 1.0}  # log2(1 + x) of x in 0..1
    shg = {"name": "shg", "log1p": True}
    assert range_problem({"p0.1": 0.0, "p99.9": np.log2(1 + 60000.0)}, trained, shg)  # 16 in the log domain
    assert range_problem({"p0.1": 0.0, "p99.9": np.log2(1 + 10.0)}, trained, shg) is None
    assert range_problem({"p0.1": 0.0, "p99.9": 0.0}, {"p0.1": 0.0, "p99.9": 0.0}, shg) is None  # no scale


def test_an_output_path_that_is_a_file_is_refused(tmp_path, model_file, capsys):
    reference, floating = write(tmp_path, "ref.tif", texture(64)), write(tmp_path, "flo.tif", texture(64, seed=2))
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert cli(model_file, reference, floating, taken) == 2
    assert "taken is a file, not a folder" in capsys.readouterr().err and taken.read_text() == "keep me"
    assert cli(model_file, reference, floating, taken / "sub") == 2
    assert "in the path of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile", "0"], "--tile: 0 is less than the minimum of 16"),
        (["--tile", "-8"], "--tile: -8 is less than the minimum"),
        (["--pad", "-1"], "--pad: -1 is less than the minimum of 0"),
        (["--max-px", "10"], "--max-px: 10 is less than the minimum of 64"),
        (["--mask-margin-px", "-2"], "--mask-margin-px: -2.0 is less than the minimum of 0"),
        (["--threads", "0"], "argument --threads: must be at least 1"),
        (["--method", "magic"], "argument --method: invalid choice: 'magic'"),
        (["--params", "{nonsense: 1}"], "unknown parameter(s) 'nonsense'"),
        (["--params", "[1, 2]"], "--params must be a mapping"),
    ],
)
def test_impossible_settings_are_a_message_and_exit_2(tmp_path, model_file, capsys, flags, message):
    reference, floating = write(tmp_path, "ref.tif", texture(64)), write(tmp_path, "flo.tif", texture(64, seed=2))
    out = tmp_path / "out"
    assert cli(model_file, reference, floating, out, *flags) == 2
    refused(capsys, out, message)


def test_a_batch_names_its_bad_pair_before_registering_any(tmp_path, model_file):
    root = tmp_path / "pairs"
    for folder in ("fine", "coarse"):
        (root / folder).mkdir(parents=True)
    for pair_id in ("a_good", "z_good"):
        write(root / "fine", f"{pair_id}.tif", texture(64))
        write(root / "coarse", f"{pair_id}.tif", texture(64, seed=2))
    write(root / "fine", "m_bright.tif", texture(64))
    write(root / "coarse", "m_bright.tif", texture(64, 60000.0, np.float32, seed=2))
    settings = {"reference": "fine", "method": "fft_search", "masks": "none"}
    with pytest.raises(InputError, match=r"coarse/m_bright\.tif: its network input spans"):
        register_batch(model_file, root, tmp_path / "out", settings)
    assert not (tmp_path / "out").exists()  # the first pair was not registered either
    with pytest.raises(InputError, match=r"inference\.tile: 0 is less than the minimum"):
        register_batch(model_file, root, tmp_path / "out", {**settings, "inference": {"tile": 0}})
    rows = register_batch(model_file, root, tmp_path / "out", {**settings, "rescale": True})
    assert list(rows["id"]) == ["a_good", "m_bright", "z_good"]


def test_an_unknown_key_is_named_with_the_accepted_ones_in_one_format():
    reject_unknown_keys({"b": 1}, ["b", "a"], "thing key(s)")  # every key known: nothing raised
    with pytest.raises(ValueError, match=r"^unknown thing key\(s\) 'c', 'd' for x; accepted: b, a$") as raised:
        reject_unknown_keys({"d": 1, "b": 2, "c": 3}, ["b", "a"], "thing key(s)", context=" for x", listed="accepted")
    assert type(raised.value) is ValueError
    with pytest.raises(InputError, match="unknown record option"):
        reject_unknown_keys(["c"], ["a"], "record option(s)", error=InputError)


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda: TiramisuConfig.from_dict({"init_filter": 1}), r"TiramisuConfig key\(s\) 'init_filter'; known: in_"),
        (lambda: RecordOptions.from_mapping({"sed": 1}), r"record option\(s\) 'sed'; known: .*seed"),
    ],
)
def test_a_model_file_or_record_option_with_a_typo_is_refused(read, message):
    with pytest.raises(ValueError, match=message):
        read()

