"""Workers keep their fence index until a store or a campaign changes, and then rebuild it:
the next ping is matched against what the marketer just saved."""

import pytest

from promotions.models import CampaignStatus, Store, TriggerType
from promotions.tracking import current_watch
from tests.factories import CampaignFactory, StoreFactory

pytestmark = pytest.mark.django_db


def test_the_index_is_kept_while_nothing_changes():
    StoreFactory()

    assert current_watch() is current_watch()


def test_a_new_moved_or_deleted_store_is_in_the_next_index():
    store = StoreFactory()
    before = len(current_watch().index)

    other = StoreFactory(latitude=45.76, longitude=4.83)
    assert len(current_watch().index) == before + 1

    Store.objects.get(pk=other.pk).delete()
    assert len(current_watch().index) == before

    store.latitude = 45.0
    store.save()
    assert current_watch().index.nearby(45.0, store.longitude)[0][0] == store.pk


def test_a_near_campaigns_stores_and_status_are_in_the_next_index():
    rivoli, opera = StoreFactory(), StoreFactory(latitude=48.8719, longitude=2.3316)
    campaign = CampaignFactory(trigger_type=TriggerType.NEAR, trigger_distance_m=300)
    campaign.stores.add(rivoli)
    assert set(current_watch().near_distances) == {rivoli.pk}

    campaign.stores.add(opera)
    assert set(current_watch().near_distances) == {rivoli.pk, opera.pk}

    campaign.status = CampaignStatus.PAUSED
    campaign.save()
    assert current_watch().near_distances == {}


def test_pausing_campaigns_from_the_admin_is_in_the_next_index(admin_client):
    store = StoreFactory()
    campaign = CampaignFactory(trigger_type=TriggerType.NEAR, trigger_distance_m=300)
    campaign.stores.add(store)
    assert current_watch().near_distances

    admin_client.post(
        "/admin/promotions/campaign/",
        {"action": "pause", "_selected_action": [campaign.pk]},
    )

    assert current_watch().near_distances == {}
