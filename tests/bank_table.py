"""A bank's customer table, shaped like the public "bank customer churn" data the project has never seen.

It is generated (seeded) rather than stored: the point is its columns, which share nothing with the Telco schema:
row numbers and customer ids (unique per row), surnames (free text), a country, 0/1 flags, amounts, and an
``Exited`` target that depends on age, activity, country and products. ``leak=True`` adds the kind of column some
copies of churn data carry: a stored model score that gives the target away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SURNAMES = [f"{prefix}{name}" for prefix in ("Mc", "O'", "Van ", "De ", "", "Ka", "Lo", "Ha") for name in
            ("Donald", "Brien", "Hill", "Rossi", "Smith", "Chen", "Nguyen", "Okafor", "Ivanov", "Garcia", "Jones",
             "Baker", "Wright", "Young", "Scott", "Green", "Adams", "Nelson", "Carter", "Mitchell", "Perez")]
LEAK_COLUMN = "Naive_Bayes_Classifier_Exited_1"


def bank_table(rows: int = 1500, seed: int = 0, leak: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    country = rng.choice(["France", "Spain", "Germany"], rows, p=[0.5, 0.25, 0.25])
    age = np.clip(rng.normal(39, 10, rows).round(), 18, 92).astype(int)
    active = rng.integers(0, 2, rows)
    products = rng.choice([1, 2, 3, 4], rows, p=[0.5, 0.44, 0.05, 0.01])
    balance = np.where(rng.random(rows) < 0.36, 0.0, rng.normal(120000, 30000, rows).round(2))
    logit = -2.0 + 0.09 * (age - 39) - 1.1 * active + 1.0 * (country == "Germany") + 2.0 * (products >= 3)
    exited = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    table = pd.DataFrame({
        "RowNumber": np.arange(1, rows + 1), "CustomerId": rng.permutation(rows) + 15565701,
        "Surname": rng.choice(SURNAMES, rows), "CreditScore": rng.normal(650, 96, rows).round().astype(int),
        "Geography": country, "Gender": rng.choice(["Female", "Male"], rows), "Age": age,
        "Tenure": rng.integers(0, 11, rows), "Balance": balance, "NumOfProducts": products,
        "HasCrCard": rng.integers(0, 2, rows), "IsActiveMember": active,
        "EstimatedSalary": rng.uniform(11.58, 199992.48, rows).round(2), "Exited": exited})
    if leak:
        table[LEAK_COLUMN] = np.clip(exited * 0.99 + rng.normal(0, 0.02, rows), 0, 1).round(5)
    return table
