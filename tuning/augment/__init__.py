"""Training-data augmentations: transforms of the train split that any strategy's data can go through.

A recipe's `augment:` section names one method (tuning/augment/settings.py):

- `reading-comprehension` (AdaptLLM, Cheng et al. 2024): each raw corpus text gets exercises mined
  from it with regular expressions appended — title, keywords-to-sentence, connective inference,
  cause and effect, paraphrase or contrast, and text completion (tuning/augment/reading.py);
- `perturb` (EDA, Wei & Zou 2019): extra copies of each supervised example whose prompt has words
  swapped, deleted or inserted; completions are never touched (tuning/augment/perturb.py);
- `synthetic-qa`: a generator writes question–answer pairs from train-split passages, which are
  filtered and added to the supervised examples (tuning/augment/synthetic_qa.py).

Augmentations read the train split only (dev stays plain, so the early-stopping loss of a plain
and an augmented variant measure the same thing). Every piece of text an augmentation writes is
checked against the test split (tuning/augment/overlap.py); what overlaps is dropped and counted
in the AugmentReport (tuning/augment/report.py), which becomes the data card (tuning/augment/card.py).
"""
