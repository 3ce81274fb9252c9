"""Rating data: the container, readers and splits."""

from dlfm.data.io import from_dataframe, load_ratings
from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.data.splits import Fold, holdout, kfold, leave_k_out, validation_split

__all__ = ["Ratings", "Vocabulary", "load_ratings", "from_dataframe", "Fold", "kfold", "holdout",
           "leave_k_out", "validation_split"]
