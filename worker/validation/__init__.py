"""The validation stage: staged rows judged by the business rules; valid rows to ``products``,
invalid rows to the error queue, a report and a notice for the vendor."""
