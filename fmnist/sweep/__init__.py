"""``python -m fmnist sweep``: hyperparameter search with Optuna, a layer on top of the fit CLI.

``command`` reads the flags and runs the workers; ``settings`` declares each sweep setting once;
``space`` reads the space file and checks it against the fit parser; ``study`` opens the Optuna
study; ``trial`` runs one fit (one per seed with ``repeats``); ``report`` prints the result and
writes ``best.yaml``; ``trust`` measures the seed noise and the importances' intervals, ``verdict``
words them; ``board`` and ``charts`` draw the study run. Nothing else in fmnist imports this
package: deleting it and the two lines in :mod:`fmnist.main` that dispatch to it leaves
``fit|validate|test|predict`` as they are.
"""
