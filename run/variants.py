"""Variants: a strategy trained on augmented data, named as `adapter@rc` in a configuration.

Which variants exist (the builtin ones and a spec's `variants:` block) and how a definition is
checked; the `@` syntax itself is parsed with the configuration (run/spec.py).
"""

from __future__ import annotations

import re

from harness.errors import DomainbenchError

# The variants every run knows: each trains its strategy with the recipe's `augment:` section set
# like this (tuning/augment). A spec's `variants:` block adds its own or redefines these.
VARIANTS = {
    "rc": {"augment": {"method": "reading-comprehension"}},
    "perturb": {"augment": {"method": "perturb"}},
    "synthetic-qa": {"augment": {"method": "synthetic-qa"}},
}
# What a variant may set: recipe overrides of the `augment:` section, and the synthetic-qa
# generator (a model spec; the run's model when not given).
VARIANT_FIELDS = {"augment": dict, "generator": str}
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def validate_variants(spec, source: str) -> None:
    """Each variant a well-formed definition, and every variant a configuration names defined.

    The augment fields are checked by loading the recipe of each strategy a variant is used with,
    under both profiles (run/preflight.py loads it again under the run's).
    """
    for name, definition in spec.variants.items():
        if not VARIANT_NAME.match(name):
            raise DomainbenchError(f"{source}: variants.{name}: expected lower-case letters, digits, '-' and '_'")
        for key, value in definition.items():
            if key not in VARIANT_FIELDS:
                raise DomainbenchError(f"{source}: variants.{name}.{key}: unknown variant field "
                                       f"(known: {', '.join(VARIANT_FIELDS)})")
            if not isinstance(value, VARIANT_FIELDS[key]):
                raise DomainbenchError(f"{source}: variants.{name}.{key}: expected a "
                                       f"{'mapping' if VARIANT_FIELDS[key] is dict else 'model spec'}, got {value!r}")
    known = sorted({*VARIANTS, *spec.variants})
    for configuration in spec.parsed_configurations("full"):
        if configuration.variant is None:
            continue
        if configuration.variant not in known:
            raise DomainbenchError(f"{source}: configurations: {configuration.name}: unknown variant "
                                   f"{configuration.variant!r} (known: {', '.join(known)}; define others under "
                                   "variants:)")
        for strategy, variant in spec.trained(configuration):
            for profile in ("quick", "full"):
                recipe = spec.recipe(strategy, profile, variant, source=source)  # raises on a bad augment field
                if not recipe.augment.active:
                    raise DomainbenchError(f"{source}: variants.{variant}: augment.method: a variant trains on "
                                           "augmented data; name a method (reading-comprehension, perturb, "
                                           "synthetic-qa)")
