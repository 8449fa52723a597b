"""Skin tone as the individual typology angle (ITA), on colours whose answer is known."""

import numpy as np
import pytest

from datagen.data.skin_tone import ita_category, ita_degrees, skin_tones, srgb_to_lab


@pytest.mark.parametrize("rgb, lab", [((255, 255, 255), (100.0, 0.0, 0.0)), ((0, 0, 0), (0.0, 0.0, 0.0)),
                                      ((255, 0, 0), (53.24, 80.09, 67.20)), ((0, 0, 255), (32.30, 79.19, -107.86)),
                                      ((119, 119, 119), (50.03, 0.0, 0.0))])
def test_srgb_to_cielab_matches_the_reference_values(rgb, lab):
    np.testing.assert_allclose(srgb_to_lab(rgb), lab, atol=0.01)


def test_ita_and_its_categories():
    assert ita_degrees([70.0, 0.0, 20.0]) == pytest.approx(45.0)  # arctan((70 - 50) / 20)
    assert ita_degrees([50.0, 5.0, 15.0]) == pytest.approx(0.0)
    assert ita_degrees([30.0, 5.0, 20.0]) == pytest.approx(-45.0)
    assert [ita_category(a) for a in (60, 55, 45, 41, 30, 15, 0, -30, -45)] == [
        "very light", "light", "light", "intermediate", "intermediate", "tan", "brown", "dark", "dark"]


def test_the_skin_tone_of_an_image_is_its_mean_skin_colours():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[0, :4] = (224, 172, 140)  # skin in the top half
    images[0, 4:] = (30, 30, 30)  # hair: not skin
    segmentation = np.zeros((2, 8, 8), np.uint8)
    segmentation[0, :4] = 1
    tones = skin_tones(images, segmentation, (1,))
    assert tones[0] == pytest.approx(ita_degrees(srgb_to_lab([224, 172, 140])))
    assert np.isnan(tones[1])  # no skin in the second image
