"""The code MLflow runs to load a searched model (MLflow's models-from-code): the
:class:`~raysynth.tracking.model.RaysynthClassifier` it serves."""

from mlflow.models import set_model

from raysynth.tracking.model import RaysynthClassifier

set_model(RaysynthClassifier())
