"""Executors move units of work to where they run and bring back their results.

They know nothing of VAEs: an executor is ``map(units, fn)``, yielding ``(unit, outcome)``
pairs as units finish, where ``outcome`` is ``fn(unit)``'s return value or the exception that
stopped it.
"""
