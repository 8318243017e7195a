"""The registered model in MLflow's models-from-code form: this file is logged as the model.

MLflow runs it on load (with kinpath's packages on the path, from the model's
``code_paths``) instead of unpickling a Python object, so loading a model runs
only code that can be read here.
"""

from mlflow.models import set_model

from kinpath.pipelines.model import KinpathModel

set_model(KinpathModel())
