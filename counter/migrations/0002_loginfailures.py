from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('counter', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='LoginFailures',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('address', models.CharField(max_length=100)),
                ('username', models.CharField(max_length=150, null=True)),
                ('failures', models.PositiveIntegerField(default=0)),
                ('last_failure', models.FloatField(db_index=True)),
            ],
            options={
                'verbose_name_plural': 'login failures',
                'constraints': [models.UniqueConstraint(fields=('address', 'username'), name='login_failures_key')],
            },
        ),
    ]
