"""The shape judge: it names fresh real shapes, refuses shapeless images, and reaches the run's figures."""

import pytest
import torch

from vidgen_nb import Config, builtin_dataset, judge
from vidgen_nb.train import summary
from vidgen_nb.trainer import Trainer


from vidgen_nb.config import BUILTIN_VARIANTS as BACKGROUNDS  # noqa: E402  (each variant has its judges)


@pytest.fixture(scope="module", params=BACKGROUNDS)
def fresh(request):
    """Images the shipped judges never saw (their own seed), 32 px, 30 of each shape, on
    each background; and the judge of that background."""
    return judge.load_judge(32, request.param), judge.draw_labelled(30, 32, judge.SEED + 2, request.param)


def test_the_shipped_32px_judges_name_real_shapes_and_not_shapeless_images(fresh):
    j, (x, y) = fresh
    for label, kind in enumerate(judge.CLASSES):
        found = judge.judge_shapes(j, x[y == label])
        assert found["shapes_named"] >= 0.6, kind  # measured 0.79-0.97 on 100 each (--size 32)
        assert found["shape_counts"][label] == sum(found["shape_counts"]), kind  # never the wrong name
    assert judge.judge_shapes(j, x[y == len(judge.CLASSES)])["shapes_named"] <= 0.05


def test_blurring_real_shapes_takes_their_names_away(fresh):
    j, (x, y) = fresh
    shapes = x[y < len(judge.CLASSES)]
    blurred = torch.nn.functional.avg_pool2d(shapes, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert judge.judge_shapes(j, shapes)["shapes_named"] > 0.6
    assert judge.judge_shapes(j, blurred)["shapes_named"] < 0.1


def test_judges_ship_for_the_tiny_and_cpu_presets_and_other_sizes_have_none(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path))
    for size in (Config.preset("tiny").model.image_size, Config.preset("cpu").model.image_size):
        for background in BACKGROUNDS:  # each says which images it judges
            found = judge.load_judge(size, background)
            assert (found.image_size, found.background) == (size, background)
    assert judge.load_judge(24) is None


def test_a_judge_trained_into_the_cache_is_found_and_one_of_another_version_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path))
    trained = judge.train_judge(24, "dark", per_class=4, epochs=1)
    judge.save_judge(trained, judge.judge_path(24, "dark"))
    x = torch.rand(5, 3, 24, 24)
    assert torch.equal(judge.load_judge(24, "dark")(x), trained(x))
    assert judge.load_judge(24, "gradient") is None  # a judge of other backgrounds
    stored = torch.load(judge.judge_path(24, "dark"), weights_only=True)
    torch.save(stored, judge.judge_path(24, "gradient"))  # renamed, it still says what it judges
    assert judge.load_judge(24, "gradient") is None
    torch.save({**stored, "data_version": stored["data_version"] - 1}, judge.judge_path(24, "dark"))
    assert judge.load_judge(24, "dark") is None  # made for other images: never used


def test_loading_a_judge_leaves_the_random_stream_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert judge.load_judge(32) is not None
    assert torch.equal(torch.rand(4), expected)  # else a run on the built-in data would train differently


def test_images_of_another_size_are_refused_by_name():
    with pytest.raises(ValueError, match=r"images of \(16, 16\) px: this judge was trained at 32 x 32"):
        judge.judge_shapes(judge.load_judge(32), torch.rand(2, 3, 16, 16))


def test_the_command_refuses_a_size_out_of_range(capsys):
    with pytest.raises(SystemExit) as stop:
        judge.main(["--size", "4"])
    assert stop.value.code == 2 and "--size 4: expected a size from 8 to 256 pixels" in capsys.readouterr().err


def test_a_run_on_the_builtin_data_reports_shapes_and_one_on_other_data_does_not(tmp_path):
    """Built-in data, given or found by its manifest, is judged by the judge of its
    backgrounds; any other folder is not."""
    config = Config.preset("tiny", swd_images=16)
    trainer = Trainer(config, progress=False)
    assert trainer.judge.background == config.data.builtin
    trainer.train(1)
    record = trainer.evaluate()
    assert 0 <= record["shapes_named"] <= 1 and 0 < record["shapes_named_real"] <= 1
    assert len(record["shape_counts"]) == 4 and sum(record["shape_counts"]) == round(16 * record["shapes_named"])
    assert "shapes: the judge names a shape in" in summary(record)
    for background in BACKGROUNDS:
        folder = builtin_dataset(tmp_path / background, per_class=4, size=16, seed=3, background=background)
        by_path = Trainer(config, data=folder, progress=False)  # built-in, by path
        assert by_path.judge.background == background and "shapes_named" in by_path.evaluate()
        other = Trainer(config.replace(builtin=background), progress=False)  # by the config
        assert other.judge.background == background and len(other.dataset) == 400
    (folder / "manifest.json").unlink()  # the same images as anybody's folder: unjudged
    other = Trainer(config, data=folder, progress=False)
    other.train(1)
    figures = other.evaluate()
    assert "shapes_named" not in figures and "shapes:" not in summary(figures)


class BrightnessJudge(torch.nn.Module):
    """A stand-in judge that names a circle in every image brighter than ``threshold``
    and no shape in the others: which images it is shown decides what it reports."""

    def __init__(self, image_size: int, threshold: float):
        super().__init__()
        self.image_size, self.threshold = image_size, threshold

    def forward(self, x):
        bright = (x.flatten(1).mean(1) > self.threshold).float()
        return torch.stack([bright, *[torch.zeros_like(bright)] * 3, 1 - bright], 1) * 20  # logits


def test_the_run_judges_its_own_samples_and_reconstructions():
    trainer = Trainer(Config.preset("tiny", swd_images=16), progress=False)
    trainer.train(2)
    samples, (real, recon) = trainer.samples(16), trainer.reconstructions(16)
    for images in (samples, recon):  # a threshold that names about half of these images
        trainer.judge = BrightnessJudge(16, images.flatten(1).mean(1).median().item())
        record = trainer.evaluate()
        expected = [judge.judge_shapes(trainer.judge, x)["shapes_named"] for x in (samples, recon, real)]
        assert [record[k] for k in ("shapes_named", "shapes_named_recon", "shapes_named_real")] == expected
        assert 0 < expected[0 if images is samples else 1] < 1
    assert f"and in {record['shapes_named_recon']:.0%} of their reconstructions" in summary(record)
    del record["shapes_named_recon"], record["shapes_named_unseen"]  # a run evaluated before these
    assert summary(record).splitlines()[1].endswith("of real images")



def test_unseen_images_are_another_drawing_and_their_reconstructions_are_judged(tmp_path):
    from vidgen_nb.data import builtin_dataset, load_dataset
    from vidgen_nb.data.shapes import UNSEEN_PER_CLASS, UNSEEN_SEED
    from vidgen_nb.evaluation import reconstruct

    trainer = Trainer(Config.preset("tiny", swd_images=16, num_classes=4), progress=False)
    trainer.train(2)
    folder = builtin_dataset(background=trainer.config.data.builtin, per_class=UNSEEN_PER_CLASS, seed=UNSEEN_SEED)
    unseen = load_dataset(folder, image_size=16, in_memory=True, num_workers=0)
    train_images = {bytes(x.numpy()) for x in trainer.dataset.images}
    assert len(unseen) == 4 * UNSEEN_PER_CLASS and not train_images & {bytes(x.numpy()) for x in unseen.images}
    images = unseen.images.float() / 255
    recon = reconstruct(trainer.generator_ema, images, unseen.labels, seed=trainer.config.seed)
    trainer.judge = BrightnessJudge(16, recon.flatten(1).mean(1).median().item())
    record = trainer.evaluate()
    expected = judge.judge_shapes(trainer.judge, recon, unseen.labels, tuple(trainer.dataset.classes))
    assert 0 < record["shapes_named_unseen"] == expected["shapes_named"] < 1
    assert record["unseen_as_class"] == expected["named_as_asked"]
    assert "of images it never trained on, " in summary(record) and "as their class)" in summary(record)
    # per class asked, in the data's order (sorted folder names), named by them
    assert trainer.class_names == ["circle", "square", "star", "triangle"]
    n, a = record["named_per_class"][2], record["as_asked_per_class"][2]
    assert f"star {n:.0%}/{a:.0%}, triangle" in summary(record, trainer.class_names)
