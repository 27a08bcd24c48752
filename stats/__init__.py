"""Statistical inference, in one place: intervals, paired tests, verdicts, power, multiplicity.

Every metric is a function of the column sums of per-example rows (`statistic.SumStatistic`), so
resampling examples (the bootstrap) and swapping them between two configurations (the paired
randomization test) are matrix products rather than Python loops. Nothing else in domainbench
computes a p-value or decides "significant"; `reports`, `compare`, the forms' parity and `monitor`
call this package. It imports no other domainbench room.
"""
