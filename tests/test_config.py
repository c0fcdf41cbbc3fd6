"""Config: presets, derived sizes, and checks that name the field and what is allowed."""

import dataclasses

import pytest

from vidgen_nb.config import PRESETS, Config, ModelConfig, VideoConfig


@pytest.mark.parametrize("name", ["tiny", "cpu", "seed"])
def test_presets_and_derived_sizes(name):
    cfg = Config.preset(name)
    m = cfg.model
    assert m.bottom_size * 2 ** len(m.widths) == m.image_size
    assert m.flat_size == m.widths[-1] * m.bottom_size**2
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_seed_preset_is_the_seeds_setting():
    cfg = Config.preset("seed")
    assert (cfg.batch_size, cfg.model.channels, cfg.model.image_size) == (16, 3, 128)
    assert cfg.model.predictor_filters == 32


def test_overrides_reach_the_right_section():
    cfg = Config.preset("tiny", latent_dim=5, noise=0.2, batch_size=3)
    assert (cfg.model.latent_dim, cfg.video.noise, cfg.batch_size) == (5, 0.2, 3)
    assert PRESETS["tiny"].model.latent_dim == 8  # presets themselves untouched


@pytest.mark.parametrize("overrides, words", [
    (dict(image_size=100), ["image_size=100", "multiple of 16"]),
    (dict(image_size=24, widths=(8, 8, 8, 8)), ["image_size=24", "widths", "multiple of 16"]),
    (dict(latent_dim=0), ["latent_dim=0", "positive integer"]),
    (dict(widths=()), ["widths=()", "a tuple of 1 to 8 positive integers"]),
    (dict(widths=(8, -1)), ["widths[1]=-1", "positive integer"]),
    (dict(num_frames=2.5), ["num_frames=2.5", "positive integer"]),
    (dict(batch_size=0), ["batch_size=0", "positive integer"]),
    (dict(delta_mode="mean"), ["delta_mode='mean'", "per_sample", "batch_mean"]),
    (dict(delta_targets=()), ["delta_targets=()", "glob"]),
    (dict(noise=-0.1), ["noise=-0.1", ">= 0"]),
    (dict(ema_decay=1.0), ["ema_decay=1.0", "[0, 1)"]),
    (dict(lr_decay=1.5), ["lr_decay=1.5", "[0, 1]"]),
    (dict(recon_sigma=-1), ["recon_sigma=-1", ">= 0"]),
    (dict(recon_sigma=float("nan")), ["recon_sigma=nan", "finite"]),
    (dict(delta_param="svd"), ["delta_param='svd'", "dense", "channel", "lora"]),
    (dict(delta_rank=0), ["delta_rank=0", "positive integer"]),
    (dict(delta_source="image"), ["delta_source='image'", "video", "constant"]),
    (dict(critic_pool="mean"), ["critic_pool='mean'", "max", "avg"]),
    (dict(decoder_convs=0), ["decoder_convs=0", "positive integer"]),
    (dict(decoder_upsample="bilinear"), ["decoder_upsample='bilinear'", "transposed", "resize"]),
    (dict(decoder_norm="batch"), ["decoder_norm='batch'", "none", "pixel"]),
    (dict(critic_convs=9), ["critic_convs=9", "at most 8"]),
    (dict(critic_mbstd=1), ["critic_mbstd=1", "True or False"]),
    (dict(latnt_dim=3), ["'latnt_dim'", "latent_dim"]),
    (dict(adversarial_recon="no"), ["adversarial_recon='no'", "True or False"]),
])
def test_invalid_values_name_field_value_and_rule(overrides, words):
    with pytest.raises(ValueError) as err:
        Config.preset("seed", **overrides)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    pytest.param(dict(latent_dim=True), "latent_dim=True: expected a positive integer", id="type-bool-not-int"),
    pytest.param(dict(beta=True), "beta=True: expected a finite number >= 0", id="type-bool-not-float"),
    pytest.param(dict(lr="0.1"), "lr='0.1': expected a number in (0, 1)", id="type-str-not-float"),
    pytest.param(dict(detach=0), "detach=0: expected True or False", id="type-bool"),
    pytest.param(dict(critic_pool="x"), "critic_pool='x': expected one of ('max', 'avg')", id="choice"),
    pytest.param(dict(image_size=0), "image_size=0: expected a positive integer", id="low-size"),
    pytest.param(dict(num_classes=-1), "num_classes=-1: expected an integer in 0..1024 (0: unconditional)",
                 id="low-count"),
    pytest.param(dict(num_workers=-1), "num_workers=-1: expected an integer >= 0", id="low-int"),
    pytest.param(dict(noise=-1), "noise=-1: expected a number >= 0", id="low-number"),
    pytest.param(dict(lr=0), "lr=0: expected a number in (0, 1)", id="low-open"),
    pytest.param(dict(gp_weight=float("nan")), "gp_weight=nan: expected a finite number >= 0", id="nan"),
    pytest.param(dict(recon_sigma=float("inf")), "recon_sigma=inf: expected a finite number >= 0", id="inf"),
    pytest.param(dict(image_size=5000), "image_size=5000: expected at most 1024", id="high-size"),
    pytest.param(dict(widths=(8, 5000)), "widths[1]=5000: expected at most 4096", id="high-item"),
    pytest.param(dict(seed=2**31), "seed=2147483648: expected an integer in 0..2147483647", id="high-count"),
    pytest.param(dict(ema_decay=1), "ema_decay=1: expected a number in [0, 1) (0: off)", id="high-open"),
    pytest.param(dict(lr_decay=1.5), "lr_decay=1.5: expected a fraction of the run in [0, 1] (0: constant)",
                 id="high-closed"),
    pytest.param(dict(image_size=24), "image_size=24: the 4 blocks of widths halve it 4 times, so it must "
                 "be a multiple of 16", id="cross-field"),
    pytest.param(dict(betas=(0.5, 1.0)), "betas=(0.5, 1.0): expected two numbers in [0, 1)", id="betas"),
])
def test_each_kind_of_error_gives_its_exact_message(overrides, message):
    with pytest.raises(ValueError) as err:
        Config.preset("seed", **overrides)
    assert str(err.value) == message


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"preset='huge': expected one of \('tiny', 'cpu', 'seed'\)"):
        Config.preset("huge")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().latent_dim = 3
    assert VideoConfig().detach is True


def test_a_config_lacking_a_field_is_refused_naming_it_not_filled_with_a_default():
    d = Config.preset("seed").to_dict()
    del d["model"]["predictor_stride"]  # as stored by checkpoints made before the option
    with pytest.raises(ValueError, match=r"its config's model section lacks \['predictor_stride'\]"):
        Config.from_dict(d)


def test_a_field_added_later_reads_as_what_runs_before_it_did():
    d = Config.preset("cpu", lr_decay=0.5).to_dict()
    assert Config.from_dict(d).train.lr_decay == 0.5
    del d["train"]["lr_decay"]  # as stored before the learning rate could fall
    assert Config.from_dict(d) == Config.preset("cpu")  # a constant rate
    d = Config.preset("cpu", critic_step=0.1, delta_penalty=2.0).to_dict()
    del d["video"]["critic_step"], d["train"]["delta_penalty"]  # before the video was guided
    assert Config.from_dict(d) == Config.preset("cpu")  # the random video, nothing on delta's size
    d = Config.preset("cpu", predictor_from=300).to_dict()
    del d["train"]["predictor_from"]  # before the predictor could start later
    assert Config.from_dict(d) == Config.preset("cpu")  # it trained with the VAE from the start


def test_quality_options_reach_the_config():
    from vidgen_nb.train import build_parser, config_for

    args = build_parser().parse_args(["--delta-param", "channel", "--ema-decay", "0.5", "--augment",
                                      "color,cutout", "--recon-sigma", "0.1", "--delta-source", "constant"])
    cfg = config_for(args)
    assert (cfg.model.delta_param, cfg.train.ema_decay, cfg.train.augment, cfg.train.recon_sigma,
            cfg.model.delta_source) == ("channel", 0.5, "color,cutout", 0.1, "constant")
    assert cfg.train.adversarial_recon and cfg.train.recon_through_generator  # the cpu preset's
    cfg = config_for(build_parser().parse_args(["--delta-param", "lora", "--delta-rank", "3"]))
    assert (cfg.model.delta_param, cfg.model.delta_rank) == ("lora", 3)
    assert (cfg.model.decoder_convs, cfg.model.critic_convs, cfg.model.critic_mbstd) == (1, 1, False)
    cfg = config_for(build_parser().parse_args(["--decoder-convs", "3", "--critic-convs", "2",
                                                "--critic-mbstd"]))
    assert (cfg.model.decoder_convs, cfg.model.critic_convs, cfg.model.critic_mbstd) == (3, 2, True)
    assert (cfg.model.decoder_upsample, cfg.model.decoder_norm) == ("transposed", "none")
    cfg = config_for(build_parser().parse_args(["--decoder-upsample", "resize", "--decoder-norm", "pixel"]))
    assert (cfg.model.decoder_upsample, cfg.model.decoder_norm) == ("resize", "pixel")
    args = build_parser().parse_args(["--adversarial-recon", "off", "--recon-through", "base"])
    cfg = config_for(args)
    assert (cfg.train.adversarial_recon, cfg.train.recon_through_generator) == (False, False)
