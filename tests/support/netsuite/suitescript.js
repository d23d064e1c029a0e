// Runs omnirecon's SuiteScripts (include/netsuite/) under Node with stand-ins for the N/ modules they use, step by
// step on one account state (custom records, cache, submitted tasks) and a clock the steps set:
//   {"steps": [{"run": "afterSubmit", "now": <ms>, "https": [answers], "case": {...}},
//              {"run": "retry", "now": <ms>, "https": [answers], "params": {...}}]}
// An https answer is {"code": 200} or {"throw": "message"}; when the list runs out, 200. Prints, per step, the
// requests the scripts made, the tasks submitted, the logs, and the outbox records after the step.
const nodeCrypto = require('crypto');
const path = require('path');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const dir = path.dirname(path.resolve(process.argv[2]));

let now = Date.now();
Date.now = () => now;
const RealDate = Date;
global.Date = class extends RealDate {
    constructor(...a) { super(...(a.length ? a : [now])); }
    static now() { return now; }
};

let step = null;                      // what the current step recorded
let answers = [];
const customRecords = {};             // internal id -> {type, values}
let nextId = 1;
const cacheStore = {};
let queuedTask = false;               // the on-demand deployment is queued (another submit throws)

const makeRecord = (doc) => ({
    type: doc.type, id: doc.id,
    getValue: ({fieldId}) => doc.fields[fieldId],
    getText: ({fieldId}) => (doc.texts || {})[fieldId],
    getLineCount: ({sublistId}) => ((doc.sublists || {})[sublistId] || []).length,
    getSublistValue: ({sublistId, fieldId, line}) => doc.sublists[sublistId][line][fieldId],
    getSublistText: ({sublistId, fieldId, line}) => (doc.sublists[sublistId][line]._text || {})[fieldId],
});
const customRecord = (type, id, values) => ({
    type: type, id: id,
    getValue: ({fieldId}) => values[fieldId],
    setValue: ({fieldId, value}) => { values[fieldId] = value; },
    save: () => {
        if (id === null) id = String(nextId++);
        else if (!customRecords[id]) throw Object.assign(new Error('record ' + id + ' does not exist'), {name: 'RCRD_DSNT_EXIST'});
        customRecords[id] = {type: type, values: JSON.parse(JSON.stringify(values))};
        return Number(id);
    },
});
const matches = (values, filter) => {
    const [field, op, value] = filter;
    const v = values[field];
    if (op === 'is') return (v ? 'T' : 'F') === value || v === value;
    if (op === 'lessthanorequalto') return Number(v) <= Number(value);
    throw new Error('filter operator not in the stand-in: ' + op);
};

const modules = {
    'N/https': {post: (req) => {
        step.requests.push({url: req.url, headers: req.headers, body: req.body, at: now});
        const a = answers.length ? answers.shift() : {code: 200};
        if (a.throw) throw Object.assign(new Error(a.throw), {name: 'SSS_REQUEST_TIME_EXCEEDED'});
        return {code: a.code, body: ''};
    }},
    'N/encode': {Encoding: {UTF_8: 'UTF_8', HEX: 'HEX'}},
    'N/crypto': {
        HashAlg: {SHA256: 'sha256'},
        createSecretKey: ({secret}) => ({value: input.secrets[secret]}),
        createHmac: ({algorithm, key}) => {
            const h = nodeCrypto.createHmac(algorithm, key.value);
            return {update: ({input: text}) => h.update(text, 'utf8'), digest: () => h.digest('hex').toUpperCase()};
        },
    },
    'N/crypto/random': {generateUUID: () => nodeCrypto.randomUUID()},
    'N/runtime': {getCurrentScript: () => ({getParameter: ({name}) => step.parameters[name]})},
    'N/search': {
        Type: {ITEM: 'item'},
        create: ({type, filters}) => ({
            type: type, filters: filters,
            run: () => ({each: (fn) => (step.search || []).forEach((row) => fn({
                id: row.id, getValue: ({name}) => row.values[name], getText: ({name}) => row.texts[name]}))}),
        }),
    },
    'N/record': {
        Type: {SALES_ORDER: 'salesorder'},
        load: ({type, id}) => {
            if (type.startsWith('customrecord')) {
                const r = customRecords[String(id)];
                if (!r) throw Object.assign(new Error('record ' + id + ' does not exist'), {name: 'RCRD_DSNT_EXIST'});
                return customRecord(type, String(id), JSON.parse(JSON.stringify(r.values)));
            }
            return makeRecord(step.records[String(id)]);
        },
        create: ({type}) => customRecord(type, null, {}),
        delete: ({id}) => { delete customRecords[String(id)]; },
    },
    'N/task': {
        TaskType: {MAP_REDUCE: 'MAP_REDUCE'},
        create: (options) => ({submit: () => {
            if (queuedTask) throw Object.assign(new Error('already queued'), {name: 'MAP_REDUCE_ALREADY_RUNNING'});
            queuedTask = true;
            step.tasks.push(options);
            return 'TASK1';
        }}),
    },
    'N/cache': {
        Scope: {PRIVATE: 'PRIVATE'},
        getCache: ({name}) => ({
            get: ({key}) => cacheStore[name + ':' + key] || null,
            put: ({key, value}) => { cacheStore[name + ':' + key] = value; },
            remove: ({key}) => { delete cacheStore[name + ':' + key]; },
        }),
    },
    'N/log': {
        debug: (e) => step.logs.push(['debug', e.title, String(e.details)]),
        audit: (e) => step.logs.push(['audit', e.title, String(e.details)]),
        error: (e) => step.logs.push(['error', e.title, String(e.details)]),
    },
};

// AMD define: N/ modules from the stand-ins, ./relative ones from the script's directory
const loaded = {};
const load = (file) => {
    if (file in loaded) return loaded[file];
    let exported = null;
    global.define = (deps, factory) => {
        exported = factory(...deps.map((d) => d.startsWith('./') ? load(path.join(dir, d.endsWith('.js') ? d : d + '.js'))
            : modules[d]));
    };
    require(file);
    loaded[file] = exported;
    return exported;
};
const ue = load(path.join(dir, 'omnirecon_ue.js'));
const mr = load(path.join(dir, 'omnirecon_retry_mr.js'));
const types = {CREATE: 'create', EDIT: 'edit', DELETE: 'delete', XEDIT: 'xedit'};

// a Map/Reduce run as NetSuite drives it: input search -> map per result -> summarize
const runRetry = () => {
    queuedTask = false;                                   // the queued run starts
    const s = mr.getInputData();
    const ids = Object.keys(customRecords).filter((id) => customRecords[id].type === s.type).filter((id) => {
        const v = customRecords[id].values;
        return s.filters.filter((f) => Array.isArray(f)).every((f) => matches(v, f));
    });
    const output = [], errors = [];
    ids.forEach((id) => {
        try {
            mr.map({key: id, value: JSON.stringify({recordType: s.type, id: id, values: {}}),
                write: ({key, value}) => output.push([key, value])});
        } catch (e) {
            errors.push([id, e.message]);
        }
    });
    const iter = (rows) => ({iterator: () => ({each: (fn) => { for (const [k, v] of rows) if (!fn(k, v)) break; }})});
    mr.summarize({output: iter(output), mapSummary: {errors: iter(errors)}});
    step.taken = ids.map(Number);
};

const results = [];
for (const s of input.steps) {
    now = s.now || now;
    answers = (s.https || []).slice();
    step = {run: s.run, requests: [], tasks: [], logs: [], parameters: s.parameters || s.params || {},
        search: (s.case || {}).search, records: (s.case || {}).records || {}};
    if (s.run === 'afterSubmit') {
        const c = s.case;
        step.parameters = c.parameters;
        ue.afterSubmit({type: c.type, UserEventType: types, newRecord: makeRecord(c.record), oldRecord: makeRecord(c.record)});
    } else if (s.run === 'retry') {
        runRetry();
    }
    const outbox = Object.keys(customRecords).map((id) => ({id: Number(id), ...customRecords[id].values}));
    results.push({requests: step.requests, tasks: step.tasks, logs: step.logs, taken: step.taken, outbox: outbox,
        cache: {...cacheStore}});
}
process.stdout.write(JSON.stringify(results));
