"""The model as a state knows it: the configured base model, or the merged base the current
adapter version was trained on (stores/bases.py), with that version loaded. Every process that
answers or learns from a state (learn, chat and its worker, ingest, merge-base) loads it here."""

from __future__ import annotations

from agent.core.config import ModelConfig, SealConfig
from agent.core.runtime import ModelRuntime
from stores.state import State


def model_config_for(state: State, cfg: SealConfig, version: int) -> ModelConfig:
    """The model to load for adapter `version`: the configured one, or the merged base (its
    checksums verified) the version was trained on."""
    base = state.base_for(version)
    if base is None:
        return cfg.model
    manifest = state.bases.verify(base)
    return cfg.model.model_copy(
        update={"name": str(state.bases.path(base)), "dtype": manifest["dtype"]}
    )


def load_runtime(state: State, cfg: SealConfig) -> ModelRuntime:
    """The model as the state knows it: the configured base model (or the merged base the state
    points at), with the current adapter version loaded. Every process that answers or learns
    from a state loads the model here."""
    current = state.adapters.current()
    runtime = ModelRuntime.load(model_config_for(state, cfg, current), cfg.adapt)
    base = state.base_for(current)
    if base is not None:
        runtime.lineage = tuple(state.bases.lineage(base))
    state.adapters.load_into(runtime)
    return runtime


def refresh_runtime(state: State, runtime: ModelRuntime, cfg: SealConfig) -> ModelRuntime:
    """`runtime` answering with the state's current version, after another thread or process
    committed or rolled back: the same runtime with the version loaded, or a newly loaded one
    when the version needs another base (a merge into the base, or a rollback across one)."""
    base = state.base_for(state.adapters.current())
    wanted = cfg.model.name if base is None else str(state.bases.path(base))
    if runtime.name != wanted:
        return load_runtime(state, cfg)
    state.adapters.load_into(runtime)
    return runtime
