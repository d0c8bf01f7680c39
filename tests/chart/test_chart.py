"""Tests of charts/weir with the real Helm engine (helm-python-sdk embeds it; no helm binary).

Renders the chart for the default values and every example, lints it, checks the rendered
objects, and checks that values.schema.json rejects bad values. Run by the e2e suite
(tests/tests/e2e/chart.rs) and so by scripts/test:

    python tests/chart/test_chart.py -v
"""

import copy
import pathlib
import unittest

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "weir"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))

OBSERVABILITY = {
    "env": [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "deployment.environment=test"}],
    "podLabels": {"team": "platform"},
    "podAnnotations": {"example.com/scrape": "true"},
    "volumes": [{"name": "extra", "emptyDir": {}}],
    "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
    "sidecars": [{"name": "collector", "image": "otel/opentelemetry-collector:0.115.0"}],
}


def render(values=None):
    """Every rendered object, by (kind, name)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name="weir", namespace="gateway")
    objects = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def example(path):
    return yaml.safe_load(path.read_text())


def pod_specs(objects):
    """(name, pod template) of every Weir workload."""
    for (kind, name), obj in objects.items():
        if kind in ("Deployment", "Job"):
            yield name, obj["spec"]["template"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def main_container(template):
    return template["spec"]["containers"][0]


class Lint(unittest.TestCase):
    def test_lint_is_clean_for_defaults_and_examples(self):
        for values in [None] + [example(p) for p in EXAMPLES]:
            report = helm.lint(CHART, values, strict=True)
            self.assertEqual(report["errors"], [], values)
            serious = [m for m in report["messages"] if m["severity"] >= 2]
            self.assertEqual(serious, [], values)


class Defaults(unittest.TestCase):
    def setUp(self):
        self.objects = render()

    def test_control_plane_service_config_and_migration_hook(self):
        o = self.objects
        cp = o[("Deployment", "weir-control-plane")]
        self.assertEqual(cp["spec"]["replicas"], 2)
        c = main_container(cp["spec"]["template"])
        env = env_of(c)
        self.assertEqual(env["WEIR_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"], "weir-database")
        self.assertEqual(env["WEIR_CONFIG"]["value"], "/etc/weir/control-plane.toml")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertTrue(c["securityContext"]["runAsNonRoot"])
        svc = o[("Service", "weir-control-plane")]
        self.assertEqual({p["name"]: p["port"] for p in svc["spec"]["ports"]}, {"grpc": 50051, "http": 8090})
        toml = o[("ConfigMap", "weir-control-plane")]["data"]["control-plane.toml"]
        self.assertIn('retention = "7d"', toml)
        self.assertIn('schedule = "0 3 * * *"', toml)
        job = o[("Job", "weir-migrate")]
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        self.assertEqual(sorted(hooks), ["pre-install", "pre-upgrade"])
        self.assertEqual(main_container(job["spec"]["template"])["args"], ["migrate"])
        # The hook runs before the ConfigMap exists: it must not mount it.
        self.assertNotIn("config", [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]])

    def test_one_data_plane_with_probes_group_and_token(self):
        o = self.objects
        dp = o[("Deployment", "weir-dp-default")]
        self.assertEqual(dp["spec"]["replicas"], 2)
        c = main_container(dp["spec"]["template"])
        env = env_of(c)
        self.assertEqual(env["WEIR_FLEET_GROUP"]["value"], "default")
        self.assertEqual(env["WEIR_CONTROL_PLANE"]["value"], "http://weir-control-plane:50051")
        self.assertEqual(env["WEIR_DATAPLANE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"], "dataplane-token")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertIn(("Service", "weir-dp-default"), o)
        self.assertIn(("PodDisruptionBudget", "weir-dp-default"), o)
        self.assertNotIn(("HorizontalPodAutoscaler", "weir-dp-default"), o)
        self.assertNotIn("WEIR_CONTROL_PLANE_CA", env)


class Observability(unittest.TestCase):
    def test_observability_values_reach_every_pod(self):
        values = {"observability": OBSERVABILITY}
        specs = list(pod_specs(render(values)))
        self.assertEqual(len(specs), 3, [n for n, _ in specs])  # control plane, data plane, migrations
        for name, tpl in specs:
            meta = tpl["metadata"]
            self.assertEqual(meta["labels"]["team"], "platform", name)
            self.assertEqual(meta["annotations"]["example.com/scrape"], "true", name)
            spec = tpl["spec"]
            self.assertIn("extra", [v["name"] for v in spec["volumes"]], name)
            main = spec["containers"][0]
            self.assertIn("/extra", [m["mountPath"] for m in main["volumeMounts"]], name)
            self.assertIn("OTEL_RESOURCE_ATTRIBUTES", env_of(main), name)
            if not name.endswith("migrate"):
                self.assertIn("collector", [c["name"] for c in spec["containers"]], name)


class Reconcile(unittest.TestCase):
    def test_reconciliation_settings_and_admin_key_reach_the_control_plane(self):
        values = {
            "controlPlane": {
                "config": {"reconcile": {"openai": {"key_env": "OPENAI_ADMIN_KEY"}}},
                "env": [{"name": "OPENAI_ADMIN_KEY",
                         "valueFrom": {"secretKeyRef": {"name": "provider-admin", "key": "openai"}}}],
            }
        }
        o = render(values)
        toml = o[("ConfigMap", "weir-control-plane")]["data"]["control-plane.toml"]
        self.assertIn("[reconcile.openai]", toml)
        self.assertIn('key_env = "OPENAI_ADMIN_KEY"', toml)
        env = env_of(main_container(o[("Deployment", "weir-control-plane")]["spec"]["template"]))
        self.assertEqual(env["OPENAI_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"], "provider-admin")


class Examples(unittest.TestCase):
    def test_every_example_renders(self):
        self.assertEqual(
            [p.name for p in EXAMPLES],
            ["datadog-agent.yaml", "otel-collector-service.yaml", "sidecar-collector.yaml", "two-data-planes.yaml"],
        )
        for path in EXAMPLES:
            objects = render(example(path))
            self.assertTrue(any(k == "Deployment" for k, _ in objects), path)

    def test_two_data_planes_get_their_groups_tokens_and_tls(self):
        o = render(example(CHART / "examples" / "two-data-planes.yaml"))
        deployments = sorted(n for k, n in o if k == "Deployment")
        self.assertEqual(deployments, ["weir-control-plane", "weir-dp-internal", "weir-dp-public"])
        public = o[("Deployment", "weir-dp-public")]
        internal = o[("Deployment", "weir-dp-internal")]
        self.assertNotIn("replicas", public["spec"], "the HPA owns the public replicas")
        self.assertEqual(internal["spec"]["replicas"], 2)
        hpa = o[("HorizontalPodAutoscaler", "weir-dp-public")]
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (3, 20))
        self.assertNotIn(("HorizontalPodAutoscaler", "weir-dp-internal"), o)
        self.assertEqual(o[("PodDisruptionBudget", "weir-dp-public")]["spec"]["minAvailable"], 2)
        for dp, group in [(public, "public"), (internal, "internal")]:
            env = env_of(main_container(dp["spec"]["template"]))
            self.assertEqual(env["WEIR_FLEET_GROUP"]["value"], group)
            self.assertEqual(env["WEIR_DATAPLANE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"], f"weir-{group}-token")
            self.assertEqual(env["WEIR_CONTROL_PLANE"]["value"], "https://weir-control-plane:50051")
            self.assertEqual(env["WEIR_CONTROL_PLANE_CA"]["value"], "/etc/weir/tls/ca.crt")
            self.assertEqual(dp["spec"]["template"]["metadata"]["labels"]["weir.dev/fleet-group"], group)
        self.assertEqual(o[("Service", "weir-dp-public")]["spec"]["type"], "LoadBalancer")
        cp_env = env_of(main_container(o[("Deployment", "weir-control-plane")]["spec"]["template"]))
        self.assertEqual(cp_env["WEIR_GROUP_TOKENS"]["valueFrom"]["secretKeyRef"]["key"], "group-tokens")
        self.assertEqual(cp_env["WEIR_TLS_CERT"]["value"], "/etc/weir/tls/tls.crt")
        self.assertEqual(main_container(o[("Deployment", "weir-control-plane")]["spec"]["template"])["readinessProbe"]["httpGet"]["scheme"], "HTTPS")
        # Selectors keep the two deployments' pods apart.
        self.assertNotEqual(
            public["spec"]["selector"]["matchLabels"], internal["spec"]["selector"]["matchLabels"]
        )


class Schema(unittest.TestCase):
    def defaults(self):
        with helm.Chart.load(CHART) as chart:
            return chart.merge_values(None)

    def test_bad_values_are_rejected_at_install(self):
        base = self.defaults()
        cases = {
            "retention": lambda v: v["controlPlane"]["config"]["request_logging"]["purge"].update(retention="30d"),
            "group": lambda v: v["dataPlanes"][0].pop("group"),
            "replicas": lambda v: v["dataPlanes"][0].update(replicas="two"),
            "unknown top-level key": lambda v: v.update(dataplanes=[]),
            "no data planes": lambda v: v.update(dataPlanes=[]),
            "tls without a secret": lambda v: v.update(tls={"enabled": True, "secretName": ""}),
            "service type": lambda v: v["dataPlanes"][0]["service"].update(type="Ingress"),
            "control-plane replicas": lambda v: v["controlPlane"].update(replicas=0),
            "data-plane name": lambda v: v["dataPlanes"][0].update(name="Public_DP"),
            "unknown data-plane key": lambda v: v["dataPlanes"][0].update(replica=3),
            "telemetry protocol": lambda v: v["dataPlanes"][0].update(telemetry={"protocol": "udp"}),
            "schedule": lambda v: v["controlPlane"]["config"]["request_logging"]["purge"].update(schedule="daily"),
            "reconcile key env": lambda v: v["controlPlane"]["config"].update(reconcile={"openai": {"key_env": "sk-not-a-name"}}),
            "reconcile provider": lambda v: v["controlPlane"]["config"].update(reconcile={"azure": {}}),
        }
        with helm.Chart.load(CHART) as chart:
            chart.validate_schema(base)
            for what, breaks in cases.items():
                values = copy.deepcopy(base)
                breaks(values)
                with self.assertRaises(helm.HelmValuesError, msg=what):
                    chart.validate_schema(values)
        # And a render (as an install does) refuses them too.
        bad = copy.deepcopy(base)
        bad["dataPlanes"][0]["replicas"] = "two"
        with self.assertRaises(helm.HelmError):
            render(bad)


if __name__ == "__main__":
    unittest.main()
