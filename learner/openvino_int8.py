"""Scoring on a CPU through OpenVINO, weights and activations in int8: the ``"ov-int8"`` candidate.

The fitted network is converted from PyTorch to OpenVINO, quantised after training by NNCF
(weights per output channel; activations with ranges from calibration texts, never the texts
the agreement check is scored on), and compiled for the CPU, where OpenVINO runs int8 matrix
products on the CPU's VNNI or AMX units. Like the other candidates it is used only after it has
agreed with fp32 on a sample and scored that sample faster (see ``TransformerClassifier``).

openvino and nncf are imported only here, when a CPU weighs this candidate. NNCF would send
usage statistics unless told it runs in CI (``NNCF_CI``): Labelwise sets that, as it sends
nothing anywhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
"""The inputs the converted network takes (the first two required): a BERT-style encoder's."""

CALIBRATION_TEXTS = 128
"""Texts whose activations set the int8 ranges (NNCF's statistics and bias correction)."""

IN_FLIGHT = 2
"""Batches scored at once, each in its own OpenVINO stream (threads shared between them), so
the cores stay busy while Python collates the next batch and copies out the last. Side by side
on a 2-core Xeon (1,024 BBC texts, batches of 16, three runs): 2.82x, 3.00x and 3.01x plain
fp32 against 2.44x, 2.91x and 2.54x for one batch at a time; three in flight read 3.07x and
2.87x in the first two runs: no clear gain for a third request."""


def openvino_available() -> bool:
    """Whether OpenVINO and NNCF are installed (both are in requirements.txt)."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))


def import_nncf() -> Any:
    """``nncf``, imported with its usage statistics off (set before its first import) and its
    progress bars and notes kept out of the worker's log."""
    os.environ["NNCF_CI"] = "1"
    import nncf

    nncf.set_log_level(logging.WARNING)
    return nncf


@dataclass(frozen=True)
class _Output:
    """What the scoring functions read from a Hugging Face model's output."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


class Finished:
    """A batch's output, called like the network that made it (arguments ignored), so the
    scoring functions read it as they read a Hugging Face model's."""

    def __init__(self, output: _Output) -> None:
        self.output = output

    def __call__(self, **_: Any) -> _Output:
        return self.output


class OpenVINOInt8:
    """The fitted network as an int8 OpenVINO model, scoring ``IN_FLIGHT`` batches at a time.

    :meth:`pipelined` gives each batch's ``.logits`` and ``.hidden_states[-1]`` (the last
    layer's, the only one kept) as CPU tensors. One caller at a time, as a classifier scores.
    """

    training = False
    in_flight = IN_FLIGHT

    def __init__(self, model: Any, calibration: list[dict[str, torch.Tensor]], threads: int) -> None:
        """Converts, quantises and compiles ``model``.

        Args:
            model: The fitted ``AutoModelForSequenceClassification`` (left as it is).
            calibration: Batches as the scoring loop collates them (same input names).
            threads: CPU threads for inference, shared by the streams (torch's own count, so
                both compare fairly).
        """
        import openvino as ov
        import torch

        nncf = import_nncf()

        names = list(calibration[0])
        if not set(INPUT_NAMES[:2]) <= set(names) <= set(INPUT_NAMES):
            raise ValueError(f"inputs {names} are not those of a BERT-style encoder "
                             f"({', '.join(INPUT_NAMES)})")

        class LogitsAndHidden(torch.nn.Module):
            """Tracing passes inputs by position, so they are named here, not ``**batch``."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
                extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra,
                                 output_hidden_states=True)
                return out.logits, out.hidden_states[-1]

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing warnings about Python control flow
                converted = ov.convert_model(
                    LogitsAndHidden(model),
                    example_input={name: calibration[0][name] for name in INPUT_NAMES if name in names})
        finally:
            model.train(was_training)
        data = nncf.Dataset([{name: batch[name].numpy() for name in names} for batch in calibration])
        quantised = nncf.quantize(converted, data, model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(calibration))  # items (batches): all of them
        compiled = ov.Core().compile_model(quantised, "CPU", {
            "INFERENCE_PRECISION_HINT": "f32",  # int8 where quantised, fp32 elsewhere; no bf16
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": max(1, min(IN_FLIGHT, threads)),
        })
        self._names = names
        self._requests = [compiled.create_infer_request() for _ in range(IN_FLIGHT)]

    def pipelined(self, batches: Iterable[dict[str, torch.Tensor]]
                  ) -> Iterator[tuple[dict[str, torch.Tensor], Finished]]:
        """Scores ``batches`` with up to ``IN_FLIGHT`` of them running at once.

        Yields:
            Each batch with its output, in the order given. The next batch is taken from
            ``batches`` (collated) while the others run, so at most ``IN_FLIGHT + 1`` are held.
        """
        pending: deque[tuple[dict[str, torch.Tensor], Any]] = deque()
        try:
            for i, batch in enumerate(batches):
                if len(pending) == IN_FLIGHT:
                    yield self._finish(*pending.popleft())
                request = self._requests[i % IN_FLIGHT]  # the one just finished, or never used
                request.start_async({name: batch[name].numpy() for name in self._names})
                pending.append((batch, request))
            while pending:
                yield self._finish(*pending.popleft())
        finally:  # left early: let what still runs end before the requests are used again
            for _, request in pending:
                request.wait()

    @staticmethod
    def _finish(batch: dict[str, torch.Tensor], request: Any
                ) -> tuple[dict[str, torch.Tensor], Finished]:
        import torch

        request.wait()
        logits, hidden = (torch.from_numpy(np.array(request.get_output_tensor(i).data))
                          for i in (0, 1))  # copies: the request's buffers are reused
        return batch, Finished(_Output(logits, (hidden,)))

    def eval(self) -> OpenVINOInt8:
        return self

    def train(self, mode: bool = True) -> OpenVINOInt8:
        return self
