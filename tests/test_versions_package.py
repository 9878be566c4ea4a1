"""Stepping a package other than a backend's default: optax through the JAX backend's
environments, with jax left to the resolver and no jaxlib pinned to optax's release numbers
(offline: the index is faked)."""

from __future__ import annotations

import pytest

from xentbench.suites.cli import main
from xentbench.suites.cli.parser import build_parser
from xentbench.suites.cli.versions_command import Releases
from xentbench.suites.versions import envs, releases
from xentbench.suites.versions.envs import STACKS

# optax 0.4.35 does not exist; it is listed so that a jaxlib of the same number would be pinned
# if companions followed any stepped package rather than the default one only.
LISTED = {
    "jax": ["0.4.35", "0.4.36"],
    "jaxlib": ["0.4.35", "0.4.36"],
    "optax": ["0.2.4", "0.2.5", "0.2.6", "0.4.35"],
}
IMPL = "jax:optax.softmax_cross_entropy_with_integer_labels"


@pytest.fixture
def offline_index(monkeypatch):
    monkeypatch.setattr(releases, "releases", lambda package, index=None: LISTED.get(package, []))
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.org/simple")
    monkeypatch.delenv("XENTBENCH_INDEX_JAX", raising=False)


def _releases(*argv: str) -> Releases:
    return Releases(build_parser().parse_args(["versions", "--backend", "jax", *argv]))


def test_optax_steps_through_the_jax_backend_without_a_jaxlib_companion(offline_index, monkeypatch):
    known = _releases("--package", "optax", "--since", "0.2.5")
    assert known.package == "optax" and known.versions == ["0.2.5", "0.2.6", "0.4.35"]
    built = {}

    def ensure(stack, package, version, companions, **_):
        built[version] = (package, companions)
        return envs.Env(envs.env_name(package, version), envs.cache_dir())

    monkeypatch.setattr(envs, "ensure", ensure)
    monkeypatch.setattr(envs, "uv_command", lambda: "uv")
    assert known.env("0.4.35").name == "optax-0.4.35"
    assert built["0.4.35"] == ("optax", {})  # jaxlib 0.4.35 exists, and is not pinned
    wanted = envs.requirements(STACKS["jax"], "optax", "0.2.5", {})
    assert wanted[0] == "optax==0.2.5"
    assert not any(r.startswith(("jaxlib", "optax>")) for r in wanted)
    assert any(r.startswith("jax>=") for r in wanted)  # the resolver picks jax for that optax


def test_the_default_package_keeps_its_companion(offline_index):
    known = _releases()
    assert known.package == "jax" and known._companions == {"jaxlib": {"0.4.35", "0.4.36"}}


def test_an_unknown_package_for_the_backend_exits_2_in_one_line(offline_index, capsys):
    code = main(["versions", "--backend", "jax", "--package", "jaxlib"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "invalid --package 'jaxlib' for jax; valid: jax, optax" in err


def test_the_optax_row_input_is_bad_in_the_installed_optax_and_good_shifted(tmp_path, capsys):
    """The input of the optax row in docs/bisect.md: the installed optax (0.2.6 on) is judged
    inaccurate on it, and the max-shifted formula of 0.2.5 and before is within a few float32
    ulps of the exact loss, log(1 + e + e^2 + e^3) by mpmath."""
    import json

    import mpmath
    import numpy as np
    from packaging.version import Version

    optax = pytest.importorskip("optax")
    if Version(optax.__version__) < Version("0.2.6"):
        pytest.skip(f"optax {optax.__version__} predates the unshifted normalizer")
    import jax.numpy as jnp

    logits = (np.arange(4.0) + 1e4)[None].astype(np.float32)
    np.save(tmp_path / "off.npy", logits)
    np.save(tmp_path / "lab.npy", np.array([0]))
    argv = ["check", "--op", "sparse_softmax_cross_entropy", "--backend", "jax"]
    argv += ["--logits", str(tmp_path / "off.npy"), "--labels", str(tmp_path / "lab.npy")]
    assert main([*argv, "--quantity", "value", "--format", "json"]) in (0, 1)
    rows = json.loads(capsys.readouterr().out)
    (row,) = [r for r in rows if r["implementation"] == IMPL and r["dtype"] == "float32"]
    exact = float(mpmath.log(1 + mpmath.e + mpmath.e**2 + mpmath.e**3))
    assert row["verdict"] == "inaccurate" and abs(row["got"] - exact) > 1e-4

    shifted = jnp.asarray(logits) - jnp.max(logits, axis=-1, keepdims=True)
    old = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1)) - shifted[:, 0]
    assert abs(float(old[0]) - exact) < 4 * float(np.spacing(np.float32(exact)))
