"""The portal tests' wait: chromedriver's stand-in for a stale element (an "unknown error" with
the DevTools message, SeleniumHQ/selenium#15401) is a try to repeat; any other driver error
still fails the test at once."""
import pytest
from selenium.common.exceptions import WebDriverException

from tests.portal_support import wait_for

_REPLACED = ('unknown error: unhandled inspector error: {"code":-32000,'
             '"message":"Node with given id does not belong to the document"}')


def _flaky(errors):
    tries = []

    def cond(_driver):
        tries.append(1)
        if errors:
            raise errors.pop(0)
        return "done"
    return cond, tries


def test_an_element_of_the_replaced_page_is_tried_again():
    cond, tries = _flaky([WebDriverException(_REPLACED), WebDriverException("unknown error: unhandled inspector "
                                                                            'error: {"message":"No node with given id found"}')])
    assert wait_for(object(), cond, timeout_s=5, every_s=0.01) == "done"
    assert len(tries) == 3


def test_another_driver_error_is_raised():
    cond, tries = _flaky([WebDriverException("unknown error: session deleted because of page crash")])
    with pytest.raises(WebDriverException, match="page crash"):
        wait_for(object(), cond, timeout_s=5, every_s=0.01)
    assert len(tries) == 1
