"""The one generator: built, loaded from a checkpoint, and found where runs live."""

import pytest
import torch

from vidgen_nb import VAE, Config, Generator, WeightPredictor3DCNN
from vidgen_nb.checkpoint import find_run, run_checkpoint
from vidgen_nb.trainer import Trainer


def test_without_a_predictor_it_is_the_plain_decoder():
    generator = Generator.build(Config.preset("tiny", use_predictor=False))
    z = generator.sample_noise(3, seed=0)
    x, delta = generator.generate(z, return_delta=True)
    assert delta is None and torch.equal(x, generator.vae.decode(z))
    with pytest.raises(ValueError, match="no weight predictor"):
        generator.predict_delta(x)


def test_a_predictor_of_the_wrong_width_is_refused():
    config = Config.preset("tiny")
    vae = VAE(config.model)
    with pytest.raises(ValueError, match="output_size=5: expected WEIGHT_UPDATE_SIZE = 387"):
        Generator(config, vae, WeightPredictor3DCNN(5))


def test_a_constant_delta_is_one_learned_vector_for_every_image_and_starts_at_the_base():
    from vidgen_nb.models import ConstantDelta

    generator = Generator.build(Config.preset("tiny", delta_source="constant"))
    assert isinstance(generator.predictor, ConstantDelta)
    assert generator.predictor.output_size == generator.deltas.weight_update_size
    z = generator.sample_noise(5, seed=0)
    x, delta = generator.generate(z, return_delta=True)
    assert torch.equal(x, generator.vae.decode(z))  # zero at the start, like the predictor's head
    with torch.no_grad():
        generator.predictor.delta.normal_()
    x, delta = generator.generate(z, return_delta=True)
    assert torch.equal(delta, generator.predictor.delta.expand(5, -1))
    per_image = generator.deltas.decode(z, delta, mode="per_sample")  # the same as each its own
    assert torch.allclose(x, per_image, atol=1e-5) and not torch.allclose(x, generator.vae.decode(z))
    x.sum().backward()  # trained like the predictor: gradients reach the vector and theta
    assert generator.predictor.delta.grad.abs().sum() > 0
    assert generator.vae.decoder.out.weight.grad.abs().sum() > 0


def test_seeded_noise_is_the_same_on_any_call_and_leaves_the_global_stream():
    generator = Generator.build(Config.preset("tiny"))
    state = torch.get_rng_state()
    a, b = generator.sample_noise(4, seed=7), generator.sample_noise(4, seed=7)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, generator.sample_noise(4, seed=8))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_from_checkpoint_generates_what_the_trainer_samples(tmp_path, ema_decay):
    trainer = Trainer(Config.preset("tiny", ema_decay=ema_decay), out=tmp_path / "run", progress=False)
    trainer.train(3)
    loaded = Generator.from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert not loaded.training and loaded.predictor is not None
    z = trainer.fixed_z[:8]
    trainer.generator.eval()
    with torch.no_grad():  # the averaged generator when there is one
        expected = trainer.generator_ema.generate(z, seed=1)
        assert torch.allclose(loaded.generate(z, seed=1), expected, atol=1e-6)
        if ema_decay:
            assert not torch.allclose(trainer.generator.generate(z, seed=1), expected, atol=1e-4)


def test_find_run_looks_in_the_folders_above(tmp_path):
    inner = tmp_path / "repo" / "notebooks"
    inner.mkdir(parents=True)
    assert find_run("main", inner) is None
    path = tmp_path / "repo" / run_checkpoint("main")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert find_run("main", inner) == path.resolve() and find_run("other", inner) is None
