"""What the predictor can be given to see, and its controls: the critic-guided video, the
code-only delta, and a delta penalised by its size."""

import pytest
import torch
from torch import nn

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.arms import STILL
from vidgen_nb.evaluation import critic_walk
from vidgen_nb.generator import Generator
from vidgen_nb.trainer import Trainer
from vidgen_nb.video import critic_direction, guided_video


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


class LinearCritic(nn.Module):
    """D(x) = sum(w * x): its gradient is w, whatever x."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


def tiny(**overrides):
    return Config.preset("tiny", log_every=1, checkpoint_every=2, sample_every=2, swd_images=16,
                         **overrides)


def test_the_critic_direction_is_its_gradient_scaled_to_rms_one():
    w = torch.randn(3, 16, 16)
    images = torch.rand(2, 3, 16, 16)
    d = critic_direction(LinearCritic(w), images, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(d, (w / w.square().mean().sqrt()).expand(2, -1, -1, -1), atol=1e-6)
    with torch.no_grad():  # the trainer makes fakes under no_grad: the gradient is still taken
        assert torch.equal(critic_direction(LinearCritic(w), images, torch.zeros(2, dtype=torch.long)), d)


def test_a_known_critic_gives_known_frames_and_zero_step_still_frames():
    step = 0.05
    cfg = tiny(critic_step=step, **STILL)  # no jitter: the frames move along the gradient alone
    generator = Generator.build(cfg)
    w = torch.randn(3, 16, 16)
    generator.use_critic(LinearCritic(w))
    seen = []
    generator.predictor.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    generator.predict_delta(images, seed=0)
    unit = w / w.square().mean().sqrt()
    for k in range(cfg.model.num_frames):
        assert torch.allclose(seen[-1][:, k], (images + k * step * unit).clamp(0, 1), atol=1e-5), k

    still = Generator.build(tiny(**STILL))
    still.predictor.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    still.predict_delta(images, seed=0)
    assert torch.allclose(seen[-1], images[:, None].expand_as(seen[-1]), atol=1e-6)
    assert torch.equal(guided_video(seen[-1], unit.expand(2, -1, -1, -1), 0.0), seen[-1].clamp(0, 1))


def test_a_guided_video_needs_its_critic():
    generator = Generator.build(tiny(critic_step=0.05))
    with pytest.raises(ValueError, match="needs the critic"):
        generator.generate(torch.randn(2, generator.vae.latent_dim))


def test_the_code_delta_depends_on_the_code_and_class_only():
    generator = Generator.build(tiny(delta_source="code"))
    with torch.no_grad():
        generator.predictor.net[-1].weight.normal_()  # no longer zero, as after training
    z = torch.randn(4, generator.vae.latent_dim)
    x1, d1 = generator.generate(z, seed=1, return_delta=True)
    x2, d2 = generator.generate(z, seed=2, return_delta=True)  # another video seed: no video at all
    assert torch.equal(d1, d2) and torch.equal(x1, x2)
    assert not torch.equal(generator.generate(z + 1, return_delta=True)[1], d1)  # the code matters
    with pytest.raises(ValueError, match="come from its codes"):
        generator.predict_delta(x1)


def test_the_squared_size_is_relative_to_the_weights_changed():
    generator = Generator.build(tiny())
    deltas = generator.deltas
    theta = torch.cat([dict(generator.vae.named_parameters())[n].detach().flatten() for n in deltas.names])
    flat = torch.stack([theta, 2 * theta, torch.zeros_like(theta)])
    assert torch.allclose(deltas.squared_size(flat), torch.tensor([1.0, 4.0, 0.0]))


@pytest.mark.parametrize("overrides", [dict(critic_step=0.05, delta_penalty=1.0), dict(delta_source="code"),
                                       dict(predictor_from=2, delta_param="channel")])
def test_each_new_option_trains_resumes_exactly_and_loads(tmp_path, data, overrides):
    cfg = tiny(**overrides)
    straight = Trainer(cfg, data=data, progress=False)
    straight.train(4)
    first = Trainer(cfg, data=data, out=tmp_path / "r", progress=False)
    first.train(2)
    del first
    resumed = Trainer.from_checkpoint(tmp_path / "r" / "checkpoint.pt", data=data, progress=False)
    resumed.train(2)
    for a, b in zip([*straight.generator.parameters(), *straight.critic.parameters()],
                    [*resumed.generator.parameters(), *resumed.critic.parameters()]):
        assert torch.allclose(a, b, atol=1e-6)
    if "delta_penalty" in overrides:
        assert resumed.history[-1]["delta_size"] > 0
    loaded = Generator.from_checkpoint(resumed.save_checkpoint(tmp_path / "end.pt"))
    z = torch.randn(4, loaded.vae.latent_dim)
    with torch.no_grad():
        assert torch.allclose(loaded.generate(z, seed=3), resumed.generator_ema.eval().generate(z, seed=3),
                              atol=1e-5)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_predictor_from_a_later_step_leaves_the_run_before_it_the_plain_one_to_the_bit(data):
    plain = Trainer(tiny(use_predictor=False), data=data, progress=False)
    plain.train(3)
    later = Trainer(tiny(predictor_from=3, delta_param="channel"), data=data, progress=False)
    later.train(3)
    assert _same(plain.generator_ema.vae, later.generator_ema.vae) and _same(plain.critic, later.critic)
    assert torch.equal(plain.samples(8), later.samples(8))


def test_from_predictor_from_on_the_averaged_vae_stays_and_the_predictor_learns(data):
    trainer = Trainer(tiny(predictor_from=2, delta_param="channel"), data=data, progress=False)
    trainer.train(2)
    averaged = [p.clone() for p in trainer.generator_ema.vae.parameters()]
    predictor = [p.clone() for p in trainer.predictor.parameters()]
    assert not any(p.any() for p in predictor[-2:])  # the head starts at zero: theta unchanged
    trainer.train(3)
    for frozen in (trainer.generator.vae, trainer.generator_ema.vae):  # the trained VAE took the average's weights
        assert all(torch.equal(p, q) for p, q in zip(frozen.parameters(), averaged))
    assert any(not torch.equal(p, q) for p, q in zip(trainer.predictor.parameters(), predictor))
    assert trainer.evaluate()["delta_spread"] > 0


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_a_run_with_a_later_predictor_stopped_before_at_or_after_its_start_goes_on_exactly(tmp_path, data, stop):
    cfg = tiny(predictor_from=2, delta_param="channel")  # train(stop) ends with a checkpoint
    straight = Trainer(cfg, data=data, progress=False)
    straight.train(stop)
    measured = straight.evaluate()  # as a study measures at the stop
    straight.train(4 - stop)
    first = Trainer(cfg, data=data, out=tmp_path / "r", progress=False)
    first.train(stop)
    del first
    resumed = Trainer.from_checkpoint(tmp_path / "r" / "checkpoint.pt", data=data, progress=False)
    again = resumed.evaluate()
    assert again.keys() == measured.keys() and again["swd"] == measured["swd"]
    resumed.train(4 - stop)
    for a, b in zip([*straight.generator.parameters(), *straight.generator_ema.parameters(), *straight.critic.parameters()],
                    [*resumed.generator.parameters(), *resumed.generator_ema.parameters(), *resumed.critic.parameters()]):
        assert torch.equal(a, b)
    loaded = Generator.from_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert loaded.predicting == (stop > 2)


def test_predictor_from_needs_a_predictor_and_is_refused_when_changed_on_resume(tmp_path, data, capsys):
    from vidgen_nb.train import main

    with pytest.raises(ValueError, match="predictor_from=5: needs the predictor"):
        tiny(predictor_from=5, use_predictor=False)
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--data", str(data), "--out", str(out), "--quiet"]
    assert main([*args, "--steps", "2", "--predictor-from", "1"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--steps", "3", "--resume", "auto", "--predictor-from", "2"])
    assert exit_.value.code == 2 and "predictor" in capsys.readouterr().err


class ConstantCritic(nn.Module):
    def forward(self, x, y=None):
        return x.flatten(1).sum(1) * 0


def test_the_critic_walk_follows_the_critic_and_the_prior():
    torch.manual_seed(0)
    generator = Generator.build(tiny(use_predictor=False)).eval()
    u = torch.randn(6, generator.vae.latent_dim)
    y = generator.vae.labels(None, 6, u.device)
    assert torch.equal(critic_walk(generator, ConstantCritic(), u, y, steps=0), u)
    # A critic with no gradient: only the prior's, -u, which the walk follows at 0.1 RMS a step.
    rms = u.square().mean(1, keepdim=True).sqrt()
    assert torch.allclose(critic_walk(generator, ConstantCritic(), u, y, steps=1, step_size=0.1),
                          u - 0.1 * u / rms, atol=1e-6)
    # A critic whose gradient outweighs the prior's: the walk raises its score.
    critic = LinearCritic(1e3 * torch.randn(generator.config.model.channels, 16, 16))
    with torch.no_grad():
        before = critic(generator.generate(generator.vae.from_noise(u, y), y=y)).mean()
        moved = critic_walk(generator, critic, u, y, steps=3, step_size=0.05)
        after = critic(generator.generate(generator.vae.from_noise(moved, y), y=y)).mean()
    assert after > before


def test_an_evaluation_judges_the_critic_s_walk_and_leaves_the_random_stream(data):
    trainer = Trainer(tiny(), data=data, progress=False)
    trainer.train(2)
    state = torch.get_rng_state()
    modules = (trainer.generator, trainer.generator_ema, trainer.critic)
    grads = [None if p.grad is None else p.grad.clone() for m in modules for p in m.parameters()]
    record = trainer.evaluate()
    assert torch.equal(state, torch.get_rng_state())  # and no weight's gradient touched, no mode left changed
    after = [p.grad for m in modules for p in m.parameters()]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, after))
    assert trainer.generator.training and trainer.critic.training
    for key in ("critic_score", "critic_score_base", "critic_score_walk", "swd_walk", "walk_shapes_named"):
        assert key in record, key


def test_a_delta_taken_apart_theta_alone_the_mean_and_each_image_s_own():
    from vidgen_nb.evaluation import delta_parts
    from vidgen_nb.plots import plot_delta_parts

    torch.manual_seed(0)
    generator = Generator.build(tiny()).eval()
    z = torch.randn(4, generator.vae.latent_dim)
    parts = delta_parts(generator, z, seed=1)
    assert not parts["|own - mean|"].any()  # the head starts at zero: every delta 0, every decode theta's
    torch.nn.init.normal_(generator.predictor.head[-1].weight, std=0.05)
    parts = delta_parts(generator, z, seed=1)
    y = generator.vae.labels(None, 4, z.device)
    with torch.no_grad():
        assert torch.allclose(parts["theta alone"], generator.vae.decode(z, y))
        assert torch.allclose(parts["theta + own delta"], generator.generate(z, y=y, seed=1), atol=1e-6)
    assert parts["|own - mean|"].amax() > 0
    assert len(plot_delta_parts(parts).axes) == 4
    with pytest.raises(ValueError, match="no weight predictor"):
        delta_parts(Generator.build(tiny(use_predictor=False)), z)
