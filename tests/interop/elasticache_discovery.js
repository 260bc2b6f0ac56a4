// Drives npm `memcached-elasticache` (AWS auto discovery over `config get cluster`)
// against a ferrocache fleet: discovers the node list from the configuration endpoint
// given as argv[2], stores and reads keys through the discovered client, then waits
// until the list grows to argv[3] nodes (the test adds one meanwhile) and checks keys
// again. Prints one JSON line per event; exits 0 only when every step succeeded.
'use strict';
const Client = require('memcached-elasticache');

const endpoint = process.argv[2];
const want = parseInt(process.argv[3], 10);
const c = new Client(endpoint, { autoDiscoverInterval: 300, retries: 0, timeout: 2000 });
const seen = [];
const say = (o) => console.log(JSON.stringify(o));
const fail = (why) => { say({ error: String(why) }); process.exit(1); };
const deadline = setTimeout(() => fail('timed out; discovered: ' + JSON.stringify(seen)), 20000);

// One request at a time: the inner client's connection pool is small.
const each = (n, f) => [...Array(n).keys()].reduce((p, i) => p.then((acc) => f(i).then((x) => acc + x)),
    Promise.resolve(0));
const setAll = (prefix, n) => each(n, (i) => new Promise((ok, ko) =>
    c.set(prefix + i, 'v' + i, 300, (e) => (e ? ko(e) : ok(0)))));
const getAll = (prefix, n) => each(n, (i) => new Promise((ok, ko) =>
    c.get(prefix + i, (e, v) => (e ? ko(e) : ok(v === 'v' + i ? 1 : 0)))));

let phase = 0;
c.on('autoDiscoverFailure', (e) => say({ failure: String(e) }));
c.on('autoDiscover', (nodes) => {
    seen.push(nodes);
    say({ discovered: nodes });
    if (phase === 0) {
        phase = 1;
        setAll('a', 200).then(() => getAll('a', 200)).then((hits) => {
            say({ phase: 'first', nodes: nodes.length, hits });
            say({ ready: true });
        }).catch(fail);
    } else if (nodes.length === want && phase === 1) {
        phase = 2;
        setAll('b', 200).then(() => getAll('b', 200)).then((hits) => {
            say({ phase: 'grown', nodes: nodes.length, hits });
            clearTimeout(deadline);
            c.end();
            process.exit(0);
        }).catch(fail);
    }
});
