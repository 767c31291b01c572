import tempfile, pytest, schemathesis, os, collections
from hypothesis import settings, HealthCheck, given, Phase
from tests.stubs.openai_stub import OpenAIStub
from tests.support.servers import ServerThread
from nodetool.config import Settings
from nodetool.api import apps

FAILS = collections.Counter()

@pytest.fixture(scope="module")
def server():
    with OpenAIStub() as stub:
        d = tempfile.mkdtemp()
        s = Settings(openai_base_url=stub.url, openai_api_key="sk-test", default_provider="openai", data_dir=d, auth_provider="none", config_dir=d+"/c")
        with ServerThread(getattr(apps, os.environ["APPF"])(s)) as srv:
            yield srv

@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_api(server, mode):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    for res in schema.get_all_operations():
        op = res.ok()
        @given(case=op.as_strategy(mode))
        @settings(max_examples=int(os.environ.get("N", 30)), suppress_health_check=list(HealthCheck), deadline=None, phases=[Phase.generate], database=None)
        def run(case):
            try:
                case.call_and_validate(base_url=server.url)
            except BaseException as e:
                key = (op.label, mode.value, str(e).split("\n")[0:3].__repr__()[:300])
                if FAILS[key] == 0:
                    print("\n=====", key, "\n", str(e)[:1500])
                FAILS[key] += 1
        run()
    print(FAILS)
