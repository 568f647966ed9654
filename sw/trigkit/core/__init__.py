"""The foundation every room builds on: errors, strict configuration, model cards, safe file
output, the file layout (:mod:`.paths`), hash-keyed caches, report.json, generic plots and the
registry through which the domains (``l0``, ``offline``) offer their data to the training core."""
