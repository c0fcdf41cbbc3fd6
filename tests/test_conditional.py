"""Class-conditional generation: the class reaches the decoder, the encoder and the
critic's score; per-sample decoding equals a loop; labels flow through resume."""

import pytest
import torch

from vidgen_nb import Config, Generator, builtin_dataset
from vidgen_nb.models import VAE, Discriminator
from vidgen_nb.reference import ReferenceGenerator
from vidgen_nb.evaluation import generate_fixed
from vidgen_nb.generated_video import latent_walk
from vidgen_nb.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


def conditional(**overrides):
    return Config.preset("tiny", num_classes=4, log_every=1, checkpoint_every=2, sample_every=2,
                         swd_images=16, **overrides)


def trained_generator(seed=0):
    torch.manual_seed(seed)
    cfg = conditional()
    g = Generator.build(cfg)
    with torch.no_grad():  # a predictor that reacts: its zero-initialised last layer made random
        for p in g.predictor.parameters():
            p.normal_(0, 0.05)
    return g.eval()


def test_the_class_changes_the_image_and_is_checked_by_name():
    g = trained_generator()
    z = g.sample_noise(4, seed=1)
    a = g.generate(z, torch.tensor([0, 0, 0, 0]), seed=0)
    b = g.generate(z, torch.tensor([1, 1, 1, 1]), seed=0)
    assert not torch.allclose(a, b)
    assert torch.equal(g.generate(z, seed=0), g.generate(z, torch.tensor([0, 1, 2, 3]), seed=0))
    with pytest.raises(ValueError, match=r"label 4: expected a class in 0\.\.3"):
        g.generate(z, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=r"labels: expected an integer tensor of shape \(4,\)"):
        g.generate(z, torch.tensor([0.0, 1, 2, 3]))
    with pytest.raises(ValueError, match="needs the images' labels"):
        g.vae.encode(torch.rand(4, 3, 16, 16))
    plain = Generator.build(Config.preset("tiny"))  # one class: labels of width zero, ignored
    z8 = z[:, :8]
    assert torch.equal(plain.generate(z8, torch.tensor([0, 1, 2, 3]), seed=0), plain.generate(z8, seed=0))
    assert plain.vae.condition(z8, torch.tensor([3, 1, 0, 2])).shape == (4, 8)


def test_conditional_decode_per_sample_equals_a_loop():
    g = trained_generator()
    ref = ReferenceGenerator(g.config, g.vae, g.predictor)
    z, y = g.sample_noise(6, seed=2), torch.tensor([3, 1, 0, 2, 2, 1])
    with torch.no_grad():
        fast, d_fast = g.generate(z, y, seed=5, return_delta=True)
        slow, d_slow = ref.generate(z, y, seed=5, return_delta=True)
    assert torch.allclose(d_fast, d_slow, atol=1e-6) and torch.allclose(fast, slow, atol=1e-5)


def test_zero_delta_gives_the_base_images_of_the_class_asked():
    g = trained_generator()
    z, y = g.sample_noise(4, seed=3), torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        assert torch.allclose(g.generate(z, y, scale=0.0, seed=0), g.vae.decode(z, y), atol=1e-6)


def test_the_critic_s_class_input_reaches_its_score():
    m = conditional().model
    critic = Discriminator(m)
    x = torch.rand(4, 3, 16, 16)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert torch.equal(critic(x, y0), critic(x, y1))  # the projection starts at zero
    with torch.no_grad():
        critic.embed.weight.normal_()
    assert not torch.allclose(critic(x, y0), critic(x, y1))
    scores = critic(x, y0)
    scores.sum().backward()
    assert critic.embed.weight.grad[0].abs().sum() > 0 and critic.embed.weight.grad[1:].abs().sum() == 0


def test_the_encoder_sees_the_class():
    vae = VAE(conditional().model)
    x = torch.rand(2, 3, 16, 16)
    mu0, _ = vae.encode(x, torch.tensor([0, 0]))
    mu1, _ = vae.encode(x, torch.tensor([1, 1]))
    assert not torch.allclose(mu0, mu1)


def test_a_conditional_run_trains_and_resumes_exactly_with_its_labels(tmp_path, data):
    straight = Trainer(conditional(), data=data, progress=False)
    straight.train(4)
    first = Trainer(conditional(), data=data, out=tmp_path / "r", progress=False)
    first.train(2)
    resumed = Trainer.from_checkpoint(tmp_path / "r" / "checkpoint.pt", data=data, progress=False)
    resumed.train(2)
    for a, b in zip(straight.generator.parameters(), resumed.generator.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(straight.critic.embed.weight, resumed.critic.embed.weight)
    assert straight.critic.embed.weight.abs().sum() > 0  # the labels reached the critic
    figures = resumed.evaluate()
    assert figures["swd"] > 0 and "delta_spread" in figures


def test_a_class_count_the_data_does_not_have_is_refused_by_name(data):
    with pytest.raises(ValueError, match=r"num_classes=3: the data has 4 classes"):
        Trainer(Config.preset("tiny", num_classes=3), data=data, progress=False)
    with pytest.raises(ValueError, match=r"num_classes=-1: expected an integer in 0\.\.1024"):
        Config.preset("tiny", num_classes=-1)


def test_the_judge_says_how_often_a_sample_is_the_class_asked():
    from vidgen_nb.judge import CLASSES, draw_labelled, judge_shapes, load_judge

    judge = load_judge(32)
    x, y = draw_labelled(40, 32, seed=123)
    x, y = x[y < len(CLASSES)], y[y < len(CLASSES)]  # shapes only, y indexes CLASSES
    right = judge_shapes(judge, x, y, CLASSES)
    wrong = judge_shapes(judge, x, (y + 1) % len(CLASSES), CLASSES)
    assert right["shapes_named"] == wrong["shapes_named"] > 0.5
    assert right["as_asked_of_named"] > 0.9 and wrong["named_as_asked"] < 0.1
    assert len(right["named_per_class"]) == len(right["as_asked_per_class"]) == 4
    sorted_names = tuple(sorted(CLASSES))  # as ImageFolder orders the built-in folders
    again = judge_shapes(judge, x, torch.tensor([sorted_names.index(CLASSES[k]) for k in y]), sorted_names)
    assert again["named_as_asked"] == right["named_as_asked"]
    with pytest.raises(ValueError, match="classes \\['cat'\\]: the judge knows only"):
        judge_shapes(judge, x[:1], torch.tensor([0]), ("cat",))


def test_videos_and_the_delta_explorer_draw_the_class_asked(tmp_path, data, capsys):
    from vidgen_nb.generated_video import delta_sweep, feedback_video, latent_walk
    from vidgen_nb.render import main as render_main
    from vidgen_nb.widgets import DeltaExplorer

    g = trained_generator()
    walk = latent_walk(g, 2, 4, seed=0, label=2)
    assert walk.shape == (2, 4, 3, 16, 16)
    first = latent_walk(g, 2, 4, seed=0)  # each video its own class: video 1 is class 1
    assert torch.allclose(first[0], latent_walk(g, 2, 4, seed=0, label=0)[0], atol=1e-6)
    assert not torch.allclose(first[1], latent_walk(g, 2, 4, seed=0, label=0)[1])
    assert feedback_video(g, 2, 3, label=3)[0].shape == (2, 3, 3, 16, 16)
    sweep = delta_sweep(g, 2, 4, label=1)
    z = g.sample_noise(2, seed=0)
    assert torch.allclose(sweep[:, 0], g.vae.decode(z, torch.tensor([1, 1])), atol=1e-6)  # s = 0
    with pytest.raises(ValueError, match=r"label 9: expected a class in 0\.\.3"):
        feedback_video(g, 1, 3, label=9)
    explorer = DeltaExplorer(g, z[:1], label=3, classes=["a", "b", "c", "d"])
    assert torch.allclose(explorer.base, g.vae.decode(z[:1], torch.tensor([3])), atol=1e-6)
    renders = explorer.images.renders
    explorer.label.value = 1  # the class menu: the new class's image and the delta of its video
    assert torch.allclose(explorer.base, g.vae.decode(z[:1], torch.tensor([1])), atol=1e-6)
    _, delta = g.generate(z[:1], torch.tensor([1]), seed=0, return_delta=True)
    assert torch.equal(explorer.delta, delta) and explorer.images.renders == renders + 1
    assert explorer.label.label == "b" and explorer.label in explorer.ui.children[0].children
    with pytest.raises(ValueError, match="label=4: expected a class in 0..3"):
        DeltaExplorer(g, z[:1], label=4)

    Trainer(conditional(), data=data, out=tmp_path / "run", progress=False).train(1)
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    assert render_main(["--checkpoint", checkpoint, "--class", "2", "--frames", "3", "--videos", "2",
                        "--out", str(tmp_path / "v.gif")]) == 0
    assert render_main(["--checkpoint", checkpoint, "--class", "4", "--out", str(tmp_path / "w.gif")]) == 2
    assert "--class 4: expected a class in 0..3" in capsys.readouterr().err
    assert render_main(["--checkpoint", checkpoint, "--mode", "latent-walk", "--across-classes", "--frames", "4",
                        "--videos", "2", "--out", str(tmp_path / "a.gif")]) == 0
    assert render_main(["--checkpoint", checkpoint, "--mode", "latent-walk", "--across-classes", "--class", "1",
                        "--out", str(tmp_path / "b.gif")]) == 2
    assert "--across-classes: goes with --mode latent-walk" in capsys.readouterr().err


@pytest.mark.parametrize("prior_components", [0, 2])
def test_a_walk_across_classes_blends_the_class_as_it_blends_the_code(prior_components):
    from vidgen_nb.generated_video import latent_walk, slerp

    torch.manual_seed(0)
    g = Generator.build(conditional(prior_components=prior_components)).eval()
    walk = latent_walk(g, 2, 6, keyframes=3, seed=0, use_delta=False, across_classes=True)
    within = latent_walk(g, 2, 6, keyframes=3, seed=0, use_delta=False)
    # Frame 0 and every second frame are keyframes: video n's keyframe k is of class n + k.
    keys = g.sample_noise(6, seed=0)
    labels = torch.tensor([0, 1, 2, 1, 2, 3])
    codes = g.vae.from_noise(keys, labels)
    for n in range(2):
        for k in range(3):
            expect = g.vae.decode(codes[3 * n + k:3 * n + k + 1], labels[3 * n + k:3 * n + k + 1])
            assert torch.allclose(walk[n, 2 * k], expect[0], atol=1e-5)
    assert torch.allclose(walk[0, 0], within[0, 0], atol=1e-6)  # both start at class 0's first key
    with torch.no_grad():  # half-way between keys: the decoder sees half of each class
        code = (slerp(codes[0], codes[1], torch.tensor(0.5)) if prior_components == 0
                else (codes[0] + codes[1]) / 2)  # N(0, I) noise walks on spheres, mixture codes in lines
        half = torch.cat([code, torch.tensor([0.5, 0.5, 0, 0])])[None]
        assert torch.allclose(walk[0, 1], g.vae.decoder(half)[0], atol=1e-5)
    with pytest.raises(ValueError, match="across_classes: needs a class-conditional model, and no label"):
        latent_walk(g, 2, 6, across_classes=True, label=1)


def test_a_conditional_preset_takes_the_class_count_of_the_folder_it_is_given(tmp_path, capsys):
    from PIL import Image

    from vidgen_nb.arms import Arm, arm_config
    from vidgen_nb.checkpoint import load_checkpoint
    from vidgen_nb.data.loading import classes_for
    from vidgen_nb.train import main as train_main

    for k, name in enumerate(("ants", "bees", "wasps")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (60 * k, 20 * i, 200)).save(tmp_path / "data" / name / f"{i}.png")
    data = tmp_path / "data"
    four = Config.preset("tiny", num_classes=4)
    assert classes_for(four, data).model.num_classes == 3
    assert classes_for(four, data, given={"num_classes": 4}).model.num_classes == 4  # asked for: kept
    assert classes_for(four, None) is four and classes_for(four, tmp_path / "nowhere") is four
    assert classes_for(Config.preset("tiny"), data).model.num_classes == 0  # unconditional stays so
    assert arm_config("tiny", Arm("x", {"num_classes": 4}), 0, data=data).model.num_classes == 4
    assert arm_config("tiny", Arm("x", {}), 0, overrides={"latent_dim": 8}, data=data).model.num_classes == 0
    # The cpu preset's model is conditional: on this folder it has 3 classes, unless told 4.
    common = ["--preset", "cpu", "--image-size", "16", "--widths", "8,16", "--critic-widths", "8,16",
              "--steps", "1", "--batch-size", "4", "--quiet", "--data", str(data)]
    assert Config.preset("cpu").model.num_classes == 4
    assert train_main([*common, "--out", str(tmp_path / "a")]) == 0
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["config"]["model"]["num_classes"] == 3
    with pytest.raises(SystemExit):
        train_main([*common, "--num-classes", "4", "--out", str(tmp_path / "b")])
    assert "num_classes=4: the data has 3 classes (ants, bees, wasps)" in capsys.readouterr().err


def test_the_trainer_draws_samples_of_the_classes_asked_and_gives_real_labels(data):
    trainer = Trainer(conditional(), data=data, progress=False)
    real, y = trainer.real_images(8, labels=True)
    assert real.shape == (8, 3, 16, 16) and y.shape == (8,) and torch.equal(real, trainer.real_images(8))
    assert torch.equal(trainer.samples(8), trainer.samples(8, y=torch.arange(8) % 4))  # default: in turn
    for k in range(4):  # each image decoded as its class: the fixed codes and the class asked
        z = trainer.generator_ema.vae.from_noise(trainer.fixed_z[:8], k)
        expected = generate_fixed(trainer.generator_ema.eval(), z, y=torch.full((8,), k), seed=0)[0]
        assert torch.allclose(trainer.samples(8, y=torch.full((8,), k)), expected, atol=1e-6)
    plain = Trainer(Config.preset("tiny", swd_images=16), data=data, progress=False)
    x, y = plain.real_images(4, labels=True)  # the data's classes, which the model ignores
    assert torch.equal(y, trainer.real_images(4, labels=True)[1])
    # An unconditional model has one class: whatever labels it is given, it draws the same.
    assert torch.equal(plain.samples(4, y=torch.tensor([3, 1, 0, 2])), plain.samples(4))
    with pytest.raises(ValueError, match=r"labels: expected an integer tensor of shape \(4,\)"):
        plain.samples(4, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"n=65: expected at most 64"):  # 64 fixed noise vectors
        plain.samples(65)
    with pytest.raises(ValueError, match=r"label=1: this model is unconditional; leave label out"):
        latent_walk(plain.generator_ema, 1, 4, label=1)  # a class asked by name is refused
