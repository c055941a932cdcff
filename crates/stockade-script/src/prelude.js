// The sandbox prelude: evaluated in every fresh context before the script is compiled.
// It returns a factory; the host calls it with the step's items, nodes, mode and log
// bounds, and gets back `run(fn)`, an async function that drives the author's code and
// normalises what it returns. Nothing here can reach the host: the context has no
// modules, no timers, no std/os; `eval` and every path to the Function constructor are
// replaced by functions that throw.
(function (input, nodes, mode, maxLogs, maxLogChars) {
  'use strict';
  const G = globalThis;
  const define = (obj, key, value) =>
    Object.defineProperty(obj, key, { value, writable: false, configurable: false, enumerable: false });
  const refuse = (what) => function () {
    throw new EvalError(what + ' is not available in a script step (code is never built from strings)');
  };

  // Strings never become code: `eval`, `Function(...)`, `(function(){}).constructor(...)`
  // and the async/generator function constructors all throw.
  const NoFunction = refuse('the Function constructor');
  NoFunction.prototype = Function.prototype;
  for (const f of [function () {}, async function () {}, function* () {}, async function* () {}]) {
    define(Object.getPrototypeOf(f), 'constructor', NoFunction);
  }
  define(G, 'Function', NoFunction);
  define(G, 'eval', refuse('eval'));

  // console: bounded count and length; the host scrubs each line.
  const logs = [];
  let dropped = 0;
  const show = (v) => {
    if (typeof v === 'string') return v;
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  };
  const writer = (prefix) => (...args) => {
    if (logs.length >= maxLogs) { dropped++; return; }
    let line = prefix + args.map(show).join(' ');
    if (line.length > maxLogChars) line = line.slice(0, maxLogChars) + '…';
    logs.push(line);
  };
  const console = {
    log: writer(''), info: writer(''), debug: writer(''), warn: writer('warn: '), error: writer('error: '),
  };

  // n8n items: `{json: …}` for each element of an array, one for an object, none for null.
  const toItems = (v) =>
    v === undefined || v === null ? [] : Array.isArray(v) ? v.map((json) => ({ json })) : [{ json: v }];
  const inputItems = toItems(input);
  const nodeItems = new Map();
  for (const name of Object.keys(nodes)) nodeItems.set(name, toItems(nodes[name]));
  let current = 0;
  const paired = (list) => (current < list.length ? list[current] : list[0]);
  const accessor = (list) => ({
    all: () => list,
    first: () => list[0],
    last: () => list[list.length - 1],
    get item() { return paired(list); },
    itemMatching: (i) => list[i],
    isExecuted: true,
  });
  const node = (name) => {
    const list = nodeItems.get(name);
    if (list === undefined) {
      throw new ReferenceError('no node "' + name + '": name it under the step\'s `nodes`');
    }
    return list;
  };
  const $ = (name) => accessor(node(name));
  const $node = {};
  for (const name of nodeItems.keys()) {
    Object.defineProperty($node, name, {
      enumerable: true,
      get: () => {
        const item = paired(nodeItems.get(name));
        return { json: item === undefined ? {} : item.json, ...accessor(nodeItems.get(name)) };
      },
    });
  }
  const $items = (name) => (name === undefined ? inputItems : node(name));
  const $input = accessor(inputItems);

  const setGlobal = (key, value) =>
    Object.defineProperty(G, key, { value, writable: true, configurable: true, enumerable: false });
  const bind = (i) => {
    current = i;
    const item = inputItems[i];
    setGlobal('$input', $input);
    setGlobal('$json', item === undefined ? {} : item.json);
    setGlobal('$itemIndex', i);
    setGlobal('$position', i);
    setGlobal('$runIndex', 0);
    setGlobal('items', inputItems);
    setGlobal('$', $);
    setGlobal('$node', $node);
    setGlobal('$items', $items);
    setGlobal('console', console);
  };

  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const one = (r, where) => {
    if (!isObject(r)) {
      throw new TypeError(where + ' is not an object: return {json: {...}} or a plain object');
    }
    if (Object.prototype.hasOwnProperty.call(r, 'json')) {
      if (!isObject(r.json)) throw new TypeError(where + ': its `json` is not an object');
      return r.json;
    }
    return r;
  };
  const nothing = 'the script returned nothing: return ';

  return async function run(fn) {
    const out = [];
    if (mode === 'each_item') {
      for (let i = 0; i < inputItems.length; i++) {
        bind(i);
        const r = await fn();
        if (r === undefined || r === null) throw new TypeError(nothing + 'one object for item ' + i);
        if (Array.isArray(r)) {
          throw new TypeError('the value returned for item ' + i + ' is an array: in each_item mode return one object');
        }
        out.push(one(r, 'the value returned for item ' + i));
      }
    } else {
      bind(0);
      const r = await fn();
      if (r === undefined || r === null) throw new TypeError(nothing + 'an array of items ([{json: {...}}]) or an object');
      if (Array.isArray(r)) {
        r.forEach((v, i) => out.push(one(v, 'returned item ' + i)));
      } else {
        out.push(one(r, 'the returned value'));
      }
    }
    if (dropped > 0) logs.push('(' + dropped + ' more console lines dropped)');
    return { items: out, logs };
  };
})
