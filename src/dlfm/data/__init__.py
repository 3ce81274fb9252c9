"""Rating data: everything between a rating file (or DataFrame) and a model's index arrays.

The package owns:

- :mod:`dlfm.data.ratings`: :class:`Ratings`, the one immutable, validated container of
  (user, item, rating[, timestamp]) triples over index arrays; :class:`Vocabulary`, the
  bijection between raw ids and indices; and :func:`~dlfm.data.ratings.raw_ids`, the one set
  of rules that turns raw ids (ints, strings, floats, a file's texts) into int64 or string ids.
- :mod:`dlfm.data.io`: reading delimited rating files (the text rules, in its docstring) and
  DataFrames; every bad input a :class:`~dlfm.errors.DataError` naming the file and line.
- :mod:`dlfm.data._fast`: the vectorised (pyarrow) reader behind
  :func:`~dlfm.data.io.load_ratings`, bound to give exactly the text reader's result or error.
- :mod:`dlfm.data.pairs`: reading files of ids to predict or recommend for.
- :mod:`dlfm.data.splits`: folds, hold-out, leave-k-out and validation splits, which share the
  full data's vocabularies.
"""

from dlfm.data.io import from_dataframe, load_ratings
from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.data.splits import Fold, holdout, kfold, leave_k_out, validation_split

__all__ = ["Ratings", "Vocabulary", "load_ratings", "from_dataframe", "Fold", "kfold", "holdout",
           "leave_k_out", "validation_split"]
