from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('counter', '0002_loginfailures'),
    ]

    operations = [
        migrations.AddField(
            model_name='visitcounter',
            name='pod',
            field=models.CharField(max_length=253, null=True),
        ),
    ]
