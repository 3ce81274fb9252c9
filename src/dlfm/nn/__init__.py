"""Network parts of the neural models, free of data handling and training.

Owns: the encoders g and h (sparse first layer over a row's entries) and the decoder f
(:mod:`~dlfm.nn.encoders`), the observation models with their links, NLLs and samplers
(:mod:`~dlfm.nn.likelihoods`, the one registry ``LIKELIHOODS``), and the keyed random draws
that make every prediction a function of (seed, user, item) alone (:mod:`~dlfm.nn.keyed`).

Imports only torch and NumPy: nothing from ``dlfm.data``, ``dlfm.training``, ``dlfm.models``
or ``dlfm.evaluation``.
"""
