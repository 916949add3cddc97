"""Bad input is refused with a ``ValueError`` that names the field and the value, before anything
is built or written; good input survives every round trip (document, networkx, node-link JSON)
unchanged."""
from __future__ import annotations

import copy
import json
import math
import os

import jax
import networkx as nx
import numpy as np
import pytest

from sagin_jax.cli import main
from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.sweep.spec import validate_space
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.scenario.generator import (generate_request_dicts, generate_requests,
                                          generate_substrate)
from sagin_jax.files import read_json, write_json
from sagin_jax.scenario.io import (load_scenario, requests_from_dict, scenario_document,
                                   substrate_from_dict, substrate_to_dict)
from sagin_jax.scenario.node_link import (load_node_link, save_node_link, substrate_from_networkx,
                                          substrate_to_networkx)
from sagin_jax.scenario.types import widen
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.validate import scenario_file
from tests.conftest import small

# A valid 4-node scenario: one domain per segment, ground has two nodes.
DOC = {
    "nodes": [
        {"id": 0, "segment": 0, "domain": 0, "cpu": 10, "sto": 12},
        {"id": 1, "segment": 1, "domain": 1, "cpu": 20, "sto": 22},
        {"id": 2, "segment": 2, "domain": 2, "cpu": 30, "sto": 32},
        {"id": 3, "segment": 2, "domain": 2, "cpu": 40, "sto": 42},
    ],
    "links": [{"u": 0, "v": 1, "bw": 5}, {"u": 1, "v": 2, "bw": 6}, {"u": 2, "v": 3, "bw": 7}],
    "requests": [
        {"id": 0, "arrival": 1, "lifetime": 5,
         "nodes": [{"cpu": 1, "sto": 2, "domain": 0}, {"cpu": 3, "sto": 4, "domain": 2}],
         "links": [{"a": 0, "b": 1, "bw": 2}]},
        {"id": 1, "arrival": 3, "lifetime": 2,
         "nodes": [{"cpu": 1, "sto": 1, "domain": 1}, {"cpu": 1, "sto": 1, "domain": 2},
                   {"cpu": 2, "sto": 2, "domain": 2}],
         "links": [{"a": 0, "b": 1, "bw": 1}, {"a": 1, "b": 2, "bw": 3}]},
    ],
}
N_DOMAINS = 3
MAX_NODES = 4


def doc_with(change):
    d = copy.deepcopy(DOC)
    change(d)
    return d


def load_doc(d, max_nodes=MAX_NODES):
    sub = substrate_from_dict(d)
    return sub, requests_from_dict(d, sub.n_domains, max_nodes)


def test_the_base_document_is_valid():
    sub, reqs = load_doc(DOC)
    assert sub.n_nodes == 4 and sub.n_domains == N_DOMAINS and reqs.n_requests == 2


# ---- substrate: node capacities, links, topology ------------------------------------------

def _set(path, value):
    def change(d):
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return change


def _drop(path):
    def change(d):
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]
    return change


SUBSTRATE_CASES = {
    # name: (change, regex that must appear in the message: field name and value)
    "negative cpu": (_set(["nodes", 2, "cpu"], -3), r"cpu\[2\].*-3"),
    "negative sto": (_set(["nodes", 1, "sto"], -0.5), r"sto\[1\].*-0\.5"),
    "nan cpu": (_set(["nodes", 3, "cpu"], math.nan), r"cpu\[3\].*nan"),
    "nan sto": (_set(["nodes", 0, "sto"], math.nan), r"sto\[0\].*nan"),
    "inf cpu": (_set(["nodes", 0, "cpu"], math.inf), r"cpu\[0\].*inf"),
    "missing cpu": (_drop(["nodes", 1, "cpu"]), r"node 1: missing field 'cpu'"),
    "missing sto": (_drop(["nodes", 3, "sto"]), r"node 3: missing field 'sto'"),
    "null cpu": (_set(["nodes", 2, "cpu"], None), r"node 2: field 'cpu' is null"),
    "string cpu": (_set(["nodes", 2, "cpu"], "30"), r"'cpu'.*'30'"),
    "negative bw": (_set(["links", 1, "bw"], -6), r"bw\[1\].*-6"),
    "nan bw": (_set(["links", 2, "bw"], math.nan), r"bw\[2\].*nan"),
    "missing bw": (_drop(["links", 0, "bw"]), r"link 0: missing field 'bw'"),
    "string bw": (_set(["links", 0, "bw"], "5"), r"link 0: field 'bw'.*'5'"),
    "link to missing node (v)": (_set(["links", 1, "v"], 9), r"link 1: field 'v' = 9"),
    "link to missing node (u)": (_set(["links", 0, "u"], -1), r"link 0: field 'u' = -1"),
    "self-loop": (_set(["links", 0, "v"], 0), r"link 0 is a self-loop on node 0"),
    "duplicate link (reversed)": (lambda d: d["links"].append({"u": 2, "v": 1, "bw": 9}),
                                  r"duplicate link between nodes 1 and 2"),
    "disconnected": (lambda d: d["links"].pop(1), r"disconnected: node 2 is not reachable"),
    "node id out of order": (_set(["nodes", 2, "id"], 7), r"node 2: field 'id' = 7"),
    "segment out of range": (lambda d: (d["nodes"][2].update(segment=5),
                                        d["nodes"][3].update(segment=5)),
                             r"node segment must be integers 0 \(space\), 1 \(air\) or 2 "
                             r"\(ground\), got \[0, 1, 5, 5\]"),
    "domain spans segments": (_set(["nodes", 3, "segment"], 1), r"domain 2 spans several segments"),
    "empty domain": (_set(["nodes", 1, "domain"], 3), r"domain 1 has no node"),
    "node not an object": (_set(["nodes", 1], 17), r"node 1 must be a JSON object, got int"),
    "nodes not a list": (_set(["nodes"], {"0": 1}), r"'nodes' must be a non-empty list"),
    "no nodes field": (_drop(["nodes"]), r"missing field 'nodes'"),
}


@pytest.mark.parametrize("case", sorted(SUBSTRATE_CASES))
def test_bad_substrate_is_refused_naming_field_and_value(case):
    change, pattern = SUBSTRATE_CASES[case]
    with pytest.raises(ValueError, match=pattern):
        substrate_from_dict(doc_with(change))


def test_build_substrate_direct_arrays():
    """The array-level entry point refuses the same things (e.g. from a generator)."""
    ok = dict(cpu=[1, 2], sto=[1, 2], segment=[0, 0], domain=[0, 0], edge_u=[0], edge_v=[1],
              edge_bw=[3])
    build_substrate(**ok)
    with pytest.raises(ValueError, match=r"node cpu\[1\] must be a finite number >= 0, got -2"):
        build_substrate(**{**ok, "cpu": [1, -2]})
    with pytest.raises(ValueError, match=r"link bw\[0\] .* got nan"):
        build_substrate(**{**ok, "edge_bw": [np.nan]})
    with pytest.raises(ValueError, match=r"link 0 field 'v' = 2 is not a node id \(0\.\.1\)"):
        build_substrate(**{**ok, "edge_v": [2]})
    with pytest.raises(ValueError, match=r"disconnected"):
        build_substrate(**{**ok, "edge_u": [], "edge_v": [], "edge_bw": []})
    with pytest.raises(ValueError, match=r"pad_edges_to=0 is smaller than the 1 links"):
        build_substrate(**ok, pad_edges_to=0)


# ---- requests -------------------------------------------------------------------------------

REQUEST_CASES = {
    "candidate domain does not exist": (_set(["requests", 1, "nodes", 2, "domain"], 3),
                                        r"request 1 node 2: candidate domain 3 does not exist"),
    "negative candidate domain": (_set(["requests", 0, "nodes", 0, "domain"], -1),
                                  r"request 0 node 0: candidate domain -1"),
    "larger than the padding": (
        _set(["requests", 0, "nodes"], [{"cpu": 1, "sto": 1, "domain": 2}] * (MAX_NODES + 1)),
        r"request 0: has 5 nodes; must be 1\.\.4 .*max_req_nodes"),
    "no nodes": (_set(["requests", 0, "nodes"], []), r"request 0: has 0 nodes"),
    "link to missing request node": (_set(["requests", 1, "links", 1, "b"], 3),
                                     r"request 1 link 1: endpoint b=3 is not a node"),
    "request link self-loop": (_set(["requests", 1, "links", 0, "b"], 0),
                               r"request 1 link 0: self-loop on request node 0"),
    "duplicate request link": (lambda d: d["requests"][1]["links"].append({"a": 2, "b": 1,
                                                                           "bw": 4}),
                               r"request 1 link 2: duplicate of link 1 \(1, 2\)"),
    "negative request bw": (_set(["requests", 0, "links", 0, "bw"], -2),
                            r"request 0 link 0: bw .* got -2"),
    "nan request cpu": (_set(["requests", 1, "nodes", 0, "cpu"], math.nan),
                        r"request 1 node 0: cpu .* got nan"),
    "missing request sto": (_drop(["requests", 1, "nodes", 1, "sto"]),
                            r"request 1 node 1: missing field 'sto'"),
    "unsorted arrivals": (_set(["requests", 1, "arrival"], 0.5),
                          r"request 1: arrival 0\.5 is earlier than the previous request's 1"),
    "zero lifetime": (_set(["requests", 0, "lifetime"], 0), r"request 0: lifetime .* got 0"),
    "nan arrival": (_set(["requests", 0, "arrival"], math.nan), r"request 0: arrival .* got nan"),
    "missing arrival": (_drop(["requests", 1, "arrival"]), r"request 1: missing field 'arrival'"),
    "request not an object": (_set(["requests", 1], [1, 2]), r"request 1 must be a JSON object"),
    "request nodes not a list": (_set(["requests", 0, "nodes"], 3),
                                 r"request 0: field 'nodes' must be a list, got int"),
    "request link not an object": (_set(["requests", 1, "links", 0], 7),
                                   r"request 1 link 0 must be a JSON object, got int"),
    "no requests": (_set(["requests"], []), r"request set is empty"),
}


@pytest.mark.parametrize("case", sorted(REQUEST_CASES))
def test_bad_request_is_refused_naming_field_and_value(case):
    change, pattern = REQUEST_CASES[case]
    d = doc_with(change)
    sub = substrate_from_dict(d)  # the substrate itself is fine
    with pytest.raises(ValueError, match=pattern):
        requests_from_dict(d, sub.n_domains, MAX_NODES)


def test_request_padding_limit_is_the_configured_one():
    """Exactly max_nodes nodes is fine; one more is not."""
    nodes = [{"cpu": 1, "sto": 1, "domain": 2}] * 3
    req = {"arrival": 0, "lifetime": 1, "nodes": nodes, "links": []}
    assert build_requests([req], N_DOMAINS, max_nodes=3).max_nodes == 3
    with pytest.raises(ValueError, match=r"has 3 nodes; must be 1\.\.2"):
        build_requests([req], N_DOMAINS, max_nodes=2)


# ---- files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,pattern", [
    ('{"nodes": [1, 2,, 3]}', r"malformed JSON at line 1 column 17"),
    ('{"nodes": []\n "links": []}', r"malformed JSON at line 2 column 2"),
    ("", r"malformed JSON at line 1 column 1"),
    ("[1, 2]", r"scenario must be a JSON object, got list"),
])
def test_malformed_json_file(tmp_path, text, pattern):
    path = tmp_path / "scenario.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=pattern) as info:
        load_scenario(path)
    if "malformed" in pattern:
        assert str(path) in str(info.value)
        with pytest.raises(ValueError, match=pattern):
            read_json(path)


def test_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00{}")
    with pytest.raises(ValueError, match=r"binary\.json: not a UTF-8 text file"):
        read_json(path)


def test_bad_file_content_is_validated(tmp_path):
    path = tmp_path / "scenario.json"
    write_json(path, doc_with(_set(["nodes", 2, "cpu"], -3)))
    with pytest.raises(ValueError, match=r"cpu\[2\].*-3"):
        load_scenario(path)
    write_json(path, doc_with(_set(["requests", 0, "nodes", 1, "domain"], 9)))
    with pytest.raises(ValueError, match=r"candidate domain 9 does not exist"):
        load_scenario(path, max_nodes=MAX_NODES)


def test_write_json_leaves_no_partial_file(tmp_path):
    path = tmp_path / "doc.json"
    write_json(path, DOC)
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})  # not JSON-serialisable: the old file stays intact
    assert read_json(path) == DOC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


# ---- scenario config ------------------------------------------------------------------------

@pytest.mark.parametrize("fields,pattern", [
    ({"n_air": 0}, r"n_air must be >= 1, got 0"),
    ({"cpu_range": ((5, 1), (1, 2), (1, 2))}, r"cpu_range\[0\] must satisfy .* got \(5, 1\)"),
    ({"req_bw": (-1, 3)}, r"req_bw must satisfy .* got \(-1, 3\)"),
    ({"req_nodes": (2, 12)}, r"req_nodes upper bound 12 exceeds max_req_nodes .* 10"),
    ({"req_nodes": (0, 3)}, r"req_nodes lower bound must be >= 1, got \(0, 3\)"),
    ({"req_link_prob": 1.5}, r"req_link_prob must be in \[0, 1\], got 1\.5"),
    ({"arrival_rate": 0.0}, r"arrival_rate must be > 0, got 0\.0"),
    ({"arrival_rate": math.nan}, r"arrival_rate must be > 0, got nan"),
    ({"mean_lifetime": -5.0}, r"mean_lifetime must be > 0, got -5\.0"),
    ({"domains_per_segment": (1, 0, 1)}, r"domains_per_segment must be .* got \(1, 0, 1\)"),
    ({"domains_per_segment": (1, 7, 1), "n_air": 6},
     r"domains_per_segment\[1\]=7 exceeds the segment's 6 nodes"),
    ({"n_space": 5, "space_planes": 2}, r"n_space=5 must be a multiple of space_planes=2"),
    ({"n_test": 0}, r"n_test must be >= 1, got 0"),
])
def test_bad_scenario_config(fields, pattern):
    with pytest.raises(ValueError, match=pattern):
        ScenarioConfig(**fields).validate()
    # from_dict (JSON lists) validates too
    as_json = json.loads(json.dumps(fields))
    with pytest.raises(ValueError, match=pattern):
        ScenarioConfig.from_dict(as_json)


def test_config_from_dict_unknown_field():
    with pytest.raises(ValueError, match=r"unknown scenario config field\(s\): \['n_spaec'\]"):
        ScenarioConfig.from_dict({"n_spaec": 4, "n_air": 6})


def test_config_from_dict_round_trip():
    cfg = small(domains_per_segment=(1, 2, 2), req_nodes=(2, 5))
    again = ScenarioConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


# ---- the command line -----------------------------------------------------------------------

def _run_cli(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_one_error_line(err, *fragments):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert err.endswith("\n")
    assert lines[0].startswith("sagin-jax simulate: error: "), lines[0]
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.mark.parametrize("scenario,fragments", [
    ({"n_air": -2}, ("n_air", "-2")),
    ({"req_link_prob": 3.0}, ("req_link_prob", "3.0")),
    ({"n_grund": 10}, ("unknown scenario config field", "n_grund")),
])
def test_cli_bad_config_exit_2_one_line(tmp_path, capsys, scenario, fragments):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"scenario": scenario}))
    out = tmp_path / "out"
    code, stdout, err = _run_cli(capsys, ["simulate", "--algo", "nrmvne", "--seed", "0",
                                          "--out", str(out), "--config", str(cfg)])
    assert code == 2
    _assert_one_error_line(err, *fragments)
    assert stdout == ""
    assert not out.exists()  # nothing half-done


@pytest.mark.parametrize("content,fragments", [
    ('{"scenario": {"n_air": 6,}}', ("bad.json", "malformed JSON", "line 1")),
    ('[1, 2]', ("bad.json", "JSON object", "list")),
    ('{"scenario": 5}', ("bad.json", "'scenario'", "int")),
    (None, ("bad.json", "No such file")),
])
def test_cli_unreadable_config_exit_2_one_line(tmp_path, capsys, content, fragments):
    cfg = tmp_path / "bad.json"
    if content is not None:
        cfg.write_text(content)
    out = tmp_path / "out"
    code, stdout, err = _run_cli(capsys, ["simulate", "--algo", "grc", "--out", str(out),
                                          "--config", str(cfg)])
    assert code == 2
    _assert_one_error_line(err, *fragments)
    assert not out.exists()


def test_cli_learning_agent_needs_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _run_cli(capsys, ["simulate", "--algo", "ddrl-nra", "--seed", "0",
                                          "--out", str(out)])
    assert code == 2
    _assert_one_error_line(err, "ddrl-nra", "--checkpoint")
    assert stdout == "" and not out.exists()


def test_cli_baseline_refuses_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run_cli(capsys, ["simulate", "--algo", "random", "--out", str(out),
                                     "--checkpoint", str(tmp_path / "ckpt")])
    assert code == 2
    _assert_one_error_line(err, "--checkpoint", "random")
    assert not out.exists()


# ---- round trips ----------------------------------------------------------------------------

def _assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def generated():
    cfg = small(domains_per_segment=(1, 2, 2))
    return cfg, generate_substrate(cfg, 3), generate_requests(cfg, 3, "test")


def test_document_round_trip_is_identical(generated, tmp_path):
    cfg, sub, reqs = generated
    doc = scenario_document(sub, reqs)
    # the document holds exactly the generator's requests
    assert doc["requests"] == generate_request_dicts(cfg, 3, "test")
    sub2 = substrate_from_dict(doc)
    reqs2 = requests_from_dict(doc, sub2.n_domains, cfg.max_req_nodes)
    assert scenario_document(sub2, reqs2) == doc
    _assert_trees_equal(sub2, sub)
    _assert_trees_equal(reqs2, widen(reqs))  # loaded in the dtypes the rules compute with
    # the generator's narrow storage writes the text its widened copy writes
    assert json.dumps(scenario_document(sub, widen(reqs))) == json.dumps(doc)
    # and through a file
    write_json(tmp_path / "scenario.json", doc)
    sub3, reqs3 = load_scenario(tmp_path / "scenario.json", cfg.max_req_nodes)
    assert scenario_document(sub3, reqs3) == doc
    assert json.loads((tmp_path / "scenario.json").read_text()) == doc


def test_document_round_trip_hand_written_is_canonical():
    """Reversed/unsorted links are normalised once; after that the round trip is exact."""
    d = doc_with(lambda d: (d["links"].reverse(), d["links"][0].update(u=3, v=2),
                            d["requests"][1]["links"].reverse(),
                            d["requests"][1]["links"][0].update(a=2, b=1)))
    once = scenario_document(*load_doc(d))
    assert once == DOC
    assert scenario_document(*load_doc(once)) == once


def test_document_round_trip_fractional_values():
    d = doc_with(lambda d: (d["nodes"][0].update(cpu=2.5), d["links"][1].update(bw=0.25),
                            d["requests"][0].update(arrival=1.5, lifetime=3.75)))
    assert scenario_document(*load_doc(d)) == d


def test_networkx_round_trip(generated):
    _, sub, _ = generated
    g = substrate_to_networkx(sub)
    doc = substrate_to_dict(sub)
    assert g.number_of_nodes() == len(doc["nodes"])
    assert g.number_of_edges() == len(doc["links"])
    for nd in doc["nodes"]:
        assert g.nodes[nd["id"]] == {k: nd[k] for k in ("segment", "domain", "cpu", "sto")}
    for lk in doc["links"]:
        assert g.edges[lk["u"], lk["v"]]["bw"] == lk["bw"]
    back = substrate_from_networkx(g)
    assert substrate_to_dict(back) == doc
    _assert_trees_equal(back, sub)


def test_networkx_relabels_in_sorted_order():
    g = nx.Graph()
    for lab, seg in ((30, 2), (10, 0), (20, 1)):
        g.add_node(lab, cpu=lab, sto=lab + 1, segment=seg)  # domain defaults to the segment
    g.add_edge(10, 20, bw=4)
    g.add_edge(30, 20, bw=5)
    doc = substrate_to_dict(substrate_from_networkx(g))
    assert doc == {
        "nodes": [{"id": 0, "segment": 0, "domain": 0, "cpu": 10, "sto": 11},
                  {"id": 1, "segment": 1, "domain": 1, "cpu": 20, "sto": 21},
                  {"id": 2, "segment": 2, "domain": 2, "cpu": 30, "sto": 31}],
        "links": [{"u": 0, "v": 1, "bw": 4}, {"u": 1, "v": 2, "bw": 5}],
    }


def test_networkx_bad_graphs():
    g = nx.Graph()
    g.add_node(0, cpu=1, sto=1, segment=0)
    g.add_node(1, cpu=1, segment=0)
    g.add_edge(0, 1, bw=1)
    with pytest.raises(ValueError, match=r"node 1: missing attribute 'sto'"):
        substrate_from_networkx(g)
    g.nodes[1]["sto"] = -4
    with pytest.raises(ValueError, match=r"sto\[1\].*-4"):
        substrate_from_networkx(g)
    g.nodes[1]["sto"] = 4
    del g.edges[0, 1]["bw"]
    with pytest.raises(ValueError, match=r"link \(0, 1\): missing attribute 'bw'"):
        substrate_from_networkx(g)
    with pytest.raises(ValueError, match=r"undirected simple graph"):
        substrate_from_networkx(nx.DiGraph(g))
    mixed = nx.Graph()
    mixed.add_node("a", cpu=1, sto=1, segment=0)
    mixed.add_node(2, cpu=1, sto=1, segment=0)
    mixed.add_edge("a", 2, bw=1)
    with pytest.raises(ValueError, match=r"node labels must be mutually comparable"):
        substrate_from_networkx(mixed)


def test_node_link_json_round_trip(generated, tmp_path):
    _, sub, _ = generated
    path = tmp_path / "substrate.json"
    save_node_link(sub, path)
    raw = json.loads(path.read_text())
    assert {"nodes", "links"} <= set(raw)
    back = load_node_link(path)
    assert substrate_to_dict(back) == substrate_to_dict(sub)
    _assert_trees_equal(back, sub)
    assert sorted(os.listdir(tmp_path)) == ["substrate.json"]  # no temporary file left


@pytest.mark.parametrize("edges", [None, "links", "edges"])
def test_node_link_file_in_either_networkx_format(generated, tmp_path, edges):
    """The installed networkx's default node-link output (``"edges"`` since networkx 3.4), and
    either key named explicitly, loads back to the same substrate, through ``load_node_link`` and
    through ``--scenario`` (``validate.scenario_file``)."""
    cfg, sub, reqs = generated
    g = substrate_to_networkx(sub)
    doc = nx.node_link_data(g) if edges is None else nx.node_link_data(g, edges=edges)
    if edges is None and tuple(int(x) for x in nx.__version__.split(".")[:2]) >= (3, 4):
        assert "edges" in doc and "links" not in doc
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    assert substrate_to_dict(load_node_link(path)) == substrate_to_dict(sub)
    got, _ = scenario_file(path, cfg, 3, "test")
    assert substrate_to_dict(got) == substrate_to_dict(sub)


def test_node_link_bad_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_text('{"nodes": [{"id": 0}], "links": [{"source": 0}]}')
    with pytest.raises(ValueError, match=r"g\.json: not a node-link graph"):
        load_node_link(path)
    path.write_text('{"nodes": [{"id": 0, "cpu": 1, "sto": 1, "segment": 0}, '
                    '{"id": 1, "cpu": -1, "sto": 1, "segment": 0}], '
                    '"links": [{"source": 0, "target": 1, "bw": 2}]}')
    with pytest.raises(ValueError, match=r"cpu\[1\].*-1"):
        load_node_link(path)
    path.write_text('{"nodes": [{"id": 0, "cpu": 1, "sto": 1, "segment": 0}, '
                    '{"id": 1, "cpu": 1, "sto": 1, "segment": 0}], '
                    '"links": [{"source": 0, "target": 1, "bw": 2}, '
                    '{"source": 1, "target": 0, "bw": 3}]}')
    with pytest.raises(ValueError, match=r"g\.json: 2 links .* duplicate link"):
        load_node_link(path)
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match=r"g\.json: not a node-link graph"):
        load_node_link(path)


@pytest.mark.parametrize("bad,match", [
    ({"n_air": "abc"}, "n_air must be an integer, got 'abc'"),
    ({"n_air": 6.0}, "n_air must be an integer, got 6.0"),
    ({"cpu_range": 5}, "cpu_range must be three"),
    ({"cpu_range": [[1, 2]]}, "cpu_range must be three"),
    ({"space_planes": 0}, "space_planes must be >= 1, got 0"),
    ({"waxman_alpha": -1}, r"waxman_alpha must be in \(0, 1\], got -1"),
    ({"req_bw": [1, "x"]}, "req_bw must be an integer range"),
])
def test_scenario_config_types_are_checked(bad, match):
    from sagin_jax.config import ScenarioConfig
    with pytest.raises(ValueError, match=match):
        ScenarioConfig.from_dict(bad)


def test_scenario_config_must_be_an_object():
    from sagin_jax.config import ScenarioConfig
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        ScenarioConfig.from_dict([1])


# The domain of every traced hyperparameter, written out: (values inside, values outside)
INF, NAN = math.inf, math.nan
HYPER_DOMAIN_CASES = {
    "lr": ([1e-9, 0.005, 50.0], [0.0, -1.0, INF, NAN]),
    "init_scale": ([1e-6, 1.0], [0.0, -0.1]),
    "ar_scale": ([1.0, 2e5], [0.0, -20000.0]),
    "w_ar": ([0.0, 2.0], [-0.5]), "w_rc": ([0.0, 2.0], [-0.5]), "w_acr": ([0.0, 2.0], [-0.5]),
    "failed_weight": ([0.0, 1.0], [-1.0, 2.0]),
    "central_strength": ([0.0, 1.0], [-0.1, 1.5]),
    "baseline_weight": ([0.0, 1.0], [-1.0, 1.1]),
    "baseline_decay": ([0.0, 0.5, 0.999], [1.0, -0.1]),
    "reward_norm": ([0.0, 1.0], [-1.0, 1.5]),
    "entropy_coef": ([0.0, 0.1], [-1e-4]),
    "max_grad_norm": ([0.1, INF], [0.0, -1.0]),
    "failed_reward": ([-1.0, 0.0, 3.0], []),  # any finite number
}


def test_every_traced_hyperparameter_has_a_stated_domain():
    assert set(HYPER_DOMAIN_CASES) == set(Hyper.names())


@pytest.mark.parametrize("name", sorted(HYPER_DOMAIN_CASES))
def test_train_config_and_sweep_space_share_the_hyperparameter_domains(name, tmp_path):
    """A value outside the domain is refused by TrainConfig (when it is one of its fields) and by
    a sweep search space (as a choice, or as either end of a range), naming the field; a value
    inside is accepted by both."""
    inside, outside = HYPER_DOMAIN_CASES[name]
    is_field = name in TrainConfig.__dataclass_fields__
    for v in inside:
        if is_field:
            TrainConfig(**{name: v}).validate()
        if math.isfinite(v):
            validate_space("sw.json", "space", {name: {"choices": [v]}})
    for v in outside:
        if is_field:
            with pytest.raises(ValueError, match=name):
                TrainConfig(**{name: v}).validate()
        with pytest.raises(ValueError, match=rf"sw\.json: field 'space\.{name}\.choices'"):
            validate_space("sw.json", "space", {name: {"choices": [v]}})
        if math.isfinite(v):
            lo, hi = (v, v + 1.0) if v < inside[0] else (inside[0], v)
            with pytest.raises(ValueError, match=rf"space\.{name}\.(low|high)"):
                validate_space("sw.json", "space", {name: {"low": lo, "high": hi}})
