"""The sids of the replies acted on: a copy of the inbound webhook's request (its signature
holds no time) is not acted on again."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0013_customer_phone_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='HandledReply',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('message_sid', models.CharField(max_length=34, unique=True)),
                ('received_at', models.DateTimeField()),
            ],
            options={
                'verbose_name_plural': 'handled replies',
            },
        ),
    ]
