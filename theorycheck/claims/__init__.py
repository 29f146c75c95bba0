"""One module per claim (and the generated cases a claim keeps beside it); importing this package registers
every claim module found here in ``theorycheck.CLAIMS`` (a new claim is a new module: nothing else to edit)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
