// Runs include/netsuite/omnirecon_ue.js afterSubmit under Node with stand-ins for the N/ modules it uses
// (records and search results from the JSON case on stdin); prints the HTTP request the script made.
const nodeCrypto = require('crypto');
const path = require('path');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));

const makeRecord = (doc) => ({
    type: doc.type, id: doc.id,
    getValue: ({fieldId}) => doc.fields[fieldId],
    getText: ({fieldId}) => (doc.texts || {})[fieldId],
    getLineCount: ({sublistId}) => ((doc.sublists || {})[sublistId] || []).length,
    getSublistValue: ({sublistId, fieldId, line}) => doc.sublists[sublistId][line][fieldId],
    getSublistText: ({sublistId, fieldId, line}) => (doc.sublists[sublistId][line]._text || {})[fieldId],
});
let sent = null;
const modules = {
    'N/https': {post: (req) => { sent = req; return {code: 200}; }},
    'N/encode': {Encoding: {UTF_8: 'UTF_8', HEX: 'HEX'}},
    'N/crypto': {
        HashAlg: {SHA256: 'sha256'},
        createSecretKey: ({secret}) => ({value: input.secrets[secret]}),
        createHmac: ({algorithm, key}) => {
            const h = nodeCrypto.createHmac(algorithm, key.value);
            return {update: ({input: text}) => h.update(text, 'utf8'), digest: () => h.digest('hex').toUpperCase()};
        },
    },
    'N/runtime': {getCurrentScript: () => ({getParameter: ({name}) => input.parameters[name]})},
    'N/search': {
        Type: {ITEM: 'item'},
        create: () => ({run: () => ({each: (fn) => input.search.forEach((row) => fn({
            id: row.id, getValue: ({name}) => row.values[name], getText: ({name}) => row.texts[name]}))})}),
    },
    'N/record': {Type: {SALES_ORDER: 'salesorder'}, load: ({id}) => makeRecord(input.records[String(id)])},
    'N/log': {error: (e) => { throw new Error(e.title + ': ' + e.details); }},
};
let script = null;
global.define = (deps, factory) => { script = factory(...deps.map((d) => modules[d])); };
require(path.resolve(process.argv[2]));
const types = {CREATE: 'create', EDIT: 'edit', DELETE: 'delete', XEDIT: 'xedit'};
script.afterSubmit({type: input.type, UserEventType: types, newRecord: makeRecord(input.record), oldRecord: makeRecord(input.record)});
process.stdout.write(JSON.stringify(sent));
