"""The answerability model: a logistic function of the evidence features
(:func:`service.answering.features.answerability_features`) and the threshold under which the engine
refuses.

Each collection has its own, fit on its own documents by :mod:`evals.calibrate` (generated
answerable and near-miss questions, plus a labelled set when the user gives one) after an
ingest changed the collection materially, and stored in the collection's metadata, so every
replica reads the same model. Before a fit exists the engine uses :data:`FALLBACK`, whose
features are all relative to the collection's own statistics (shares of IDF weight, IDF as a
share of the collection's largest, cosines).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

METADATA_KEY = "citeqa_answerability"  # collection metadata: the model as JSON


@dataclass(frozen=True)
class AnswerabilityModel:
    """Weights (``bias`` included) over named features, the refusal threshold, and what the
    fit measured (cross-validated refusal figures, the collection's size when fit)."""

    weights: dict[str, float]
    threshold: float
    fitted: bool = False
    figures: dict[str, Any] = field(default_factory=dict)

    def score(self, features: Mapping[str, float]) -> float:
        z = self.weights.get("bias", 0.0) + sum(
            self.weights.get(name, 0.0) * value for name, value in features.items()
        )
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> str:
        return json.dumps(
            {"weights": self.weights, "threshold": self.threshold, "figures": self.figures}
        )

    @classmethod
    def from_json(cls, text: str) -> AnswerabilityModel:
        data = json.loads(text)
        weights = {str(k): float(v) for k, v in data["weights"].items()}
        return cls(weights, float(data["threshold"]), True, dict(data.get("figures", {})))


# Before a collection has its own fit: the weights `evals.calibrate` fit on the bundled corpus'
# development set plus generated near misses (a fifth of the unanswerable weight), over
# features that are all relative to the collection they are computed in; threshold at 4% false
# refusals on that set (cross-validated there: near misses refused 0.611 at 0.040 false
# refusals).
FALLBACK = AnswerabilityModel(
    weights={
        "bias": -2.693,
        "names_missing_all": -0.911,
        "names_elsewhere": -0.683,
        "names_apart": -0.318,
        "number_unrelated": -0.583,
        "similarity": 0.948,
        "max_similarity": 0.917,
        "coverage": -0.672,
        "detail": 0.686,
        "doc_coverage": 0.131,
        "chunk_similarity": 1.216,
        "number_missing": -0.902,
        "focus_similarity": 0.185,
        "focus_coverage": 0.954,
        "focus_head_found": 0.094,
        "best_detail_any": 0.779,
        "max_idf_missing": 0.394,
    },
    threshold=0.2961,
)


def _fresh_metadata(collection: Collection) -> Mapping[str, Any]:
    """The collection's metadata as the store has it now (another process may have stored a
    model since this handle was opened); the handle's copy when that read fails."""
    try:
        model = collection._client.get_collection(
            collection.name, tenant=collection.tenant, database=collection.database
        )
        return model.metadata or {}
    except Exception:  # a store that went away: the handle's copy is the best we have
        log.debug("re-reading the metadata of %s failed", collection.name, exc_info=True)
        return collection.metadata or {}


def load(collection: Collection) -> AnswerabilityModel:
    """The model stored with the collection, else :data:`FALLBACK`."""
    text = _fresh_metadata(collection).get(METADATA_KEY)
    if not isinstance(text, str):
        return FALLBACK
    try:
        return AnswerabilityModel.from_json(text)
    except (ValueError, KeyError, TypeError):
        log.warning("the stored answerability model of %s is unreadable", collection.name)
        return FALLBACK


def store(collection: Collection, model: AnswerabilityModel) -> None:
    """Keep ``model`` in the collection's metadata, beside what is there already."""
    metadata = dict(_fresh_metadata(collection))
    metadata[METADATA_KEY] = model.to_json()
    collection.modify(metadata=metadata)
