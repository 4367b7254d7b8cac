"""The tooling around the method: what trains, stores, scores, explains and draws it.

Nothing in ``asbsr`` itself or ``asbsr.models`` imports from here. ``zoo`` and ``zoo_train`` hold
and train the pretrained models; ``benchmark``, ``results`` and ``paper_results`` measure and
tabulate them; ``analysis`` and ``probe`` ask what E and M have learned; ``verdicts`` turns
numbers into the sentences the notebooks print; ``notebook`` and ``pipeline`` run the notebooks;
``cli`` is the ``asbsr`` command; ``viz`` draws the figures; ``download``, ``step_budget`` help
with DIV2K and with training on a time budget.
"""
