from django.db import migrations, models

# The database keeps the total in step with the daily rows: a visit is then one statement (an
# upsert of today's row), half the cost of a two-statement transaction (docs/performance.md).
# Without the counter row the statement aborts, so no visit is half counted.
TRIGGERS = """
CREATE TRIGGER counter_dailyvisits_insert AFTER INSERT ON counter_dailyvisits BEGIN
    SELECT RAISE(ABORT, 'visit counter row missing: run manage.py prepare')
        WHERE NOT EXISTS (SELECT 1 FROM counter_visitcounter WHERE id = 1);
    UPDATE counter_visitcounter SET total = total + NEW.visits WHERE id = 1;
END;
CREATE TRIGGER counter_dailyvisits_update AFTER UPDATE OF visits ON counter_dailyvisits BEGIN
    SELECT RAISE(ABORT, 'visit counter row missing: run manage.py prepare')
        WHERE NOT EXISTS (SELECT 1 FROM counter_visitcounter WHERE id = 1);
    UPDATE counter_visitcounter SET total = total + NEW.visits - OLD.visits WHERE id = 1;
END;
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="DailyVisits",
            fields=[
                ("day", models.DateField(primary_key=True, serialize=False)),
                ("visits", models.PositiveBigIntegerField(default=0)),
            ],
            options={
                "verbose_name": "daily visits",
                "verbose_name_plural": "daily visits",
                "ordering": ["-day"],
            },
        ),
        migrations.CreateModel(
            name="VisitCounter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("total", models.PositiveBigIntegerField(default=0)),
            ],
            options={"verbose_name": "visit counter"},
        ),
        migrations.RunSQL(
            sql=[statement + "END;" for statement in TRIGGERS.split("END;") if statement.strip()],
            reverse_sql=[
                "DROP TRIGGER counter_dailyvisits_insert",
                "DROP TRIGGER counter_dailyvisits_update",
            ],
        ),
    ]
