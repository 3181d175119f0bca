"""Users' adapters as LoRA slots of the one loaded base model.

The runtime (agent/core/runtime.py) holds one knowledge slot; a server answering many users
would reload it from disk at every switch. Here each (user, version) gets a named PEFT adapter
beside it, loaded once from the user's verified version folder, and the request's slot is made
active around its generation; the least recently used slots are dropped past `capacity`.
Versions never change once committed, so a cached slot is never stale.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterator

from peft import LoraConfig, set_peft_model_state_dict
from safetensors.torch import load_file

from agent.core.errors import SealError
from agent.core.runtime import ADAPTER, ADAPTER_CONFIG, ADAPTER_WEIGHTS, ModelRuntime
from stores.adapters import BASE
from stores.state import State


class AdapterSlots:
    def __init__(self, runtime: ModelRuntime, capacity: int):
        self.runtime = runtime
        self.capacity = capacity
        self.loaded: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.loads = 0  # slots read from disk, for the status endpoint and the benchmark

    def _load(self, user: str, state: State, version: int) -> str:
        manifest = state.adapters.verify(version)
        if manifest["base_fingerprint"] != self.runtime.fingerprint():
            raise SealError(
                f"adapter v{version} was trained on another base model (fingerprint "
                f"{manifest['base_fingerprint']}); seal serve answers every user over one base "
                f"model ({self.runtime.name}): roll back to a version trained on it"
            )
        folder = state.adapters.path(version)
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        lora = LoraConfig(
            r=config["r"],
            lora_alpha=config["lora_alpha"],
            lora_dropout=0.0,
            target_modules=config["target_modules"],
            bias="none",
            task_type="CAUSAL_LM",
        )
        slot = f"user-{user}-v{version}"
        model = self.runtime.model
        try:
            model.add_adapter(slot, lora)
            set_peft_model_state_dict(model, load_file(str(folder / ADAPTER_WEIGHTS)), slot)
        except Exception:
            if slot in model.peft_config:
                model.delete_adapter(slot)
            raise
        finally:
            model.set_adapter(ADAPTER)
        self.loads += 1
        return slot

    def _slot(self, user: str, state: State, version: int) -> str:
        key = (user, version)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        while len(self.loaded) >= self.capacity:
            _, old = self.loaded.popitem(last=False)
            self.runtime.model.delete_adapter(old)
            self.runtime.model.set_adapter(ADAPTER)
        self.loaded[key] = self._load(user, state, version)
        return self.loaded[key]

    @contextlib.contextmanager
    def active(self, user: str, state: State, version: int) -> Iterator[None]:
        """Inside, the model answers with `user`'s adapter `version` (BASE: no adapter)."""
        if state.base_for(version) is not None:
            raise SealError(
                f"adapter v{version} was trained on a merged base (seal merge-base); seal serve "
                "answers every user over one base model: roll back to an earlier version"
            )
        if version == BASE:
            with self.runtime.adapter_disabled():
                yield
            return
        self.runtime.model.set_adapter(self._slot(user, state, version))
        try:
            yield
        finally:
            self.runtime.model.set_adapter(ADAPTER)

    def drop_user(self, user: str) -> None:
        for key in [k for k in self.loaded if k[0] == user]:
            self.runtime.model.delete_adapter(self.loaded.pop(key))
        self.runtime.model.set_adapter(ADAPTER)
