"""Brand reference data and everything that decides whether a listing presents a brand.

Plain Python over small frozen records: no Flink, no Kafka. `pipelines/` calls into it.
"""
