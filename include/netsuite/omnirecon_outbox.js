/**
 * omnirecon's NetSuite-side outbox, shared by the user-event script (omnirecon_ue.js) and the retry script
 * (omnirecon_retry_mr.js): signing and posting a message, and the custom record a message waits in after a failed
 * post (customrecord_omnirecon_outbox, objects/customrecord_omnirecon_outbox.xml) until a retry gets a 2xx.
 *
 * Each attempt is signed afresh (X-Omnirecon-Timestamp: now), since the receiver refuses a timestamp more than
 * 5 minutes old; the body, and with it the message's eventId, stays byte for byte what afterSubmit first sent, so
 * the receiver stores a message that did arrive the first time (its answer lost) only once.
 * Backoff after the n-th failed attempt: none after afterSubmit's (the retry run it requests takes it), then
 * 1, 2, 4, 8, 16, 32 minutes and every hour; a message not delivered within 72 h is marked failed and kept.
 *
 * @NApiVersion 2.1
 * @NModuleScope SameAccount
 */
define(['N/https', 'N/crypto', 'N/encode', 'N/record', 'N/task', 'N/cache', 'N/log'],
    (https, crypto, encode, record, task, cache, log) => {

        const RECORD = 'customrecord_omnirecon_outbox';
        const FIELDS = {
            eventId: 'custrecord_omnirecon_ob_event_id',      // the message's eventId (Free-Form Text)
            body: 'custrecord_omnirecon_ob_body',             // the exact JSON body afterSubmit sent (Long Text)
            url: 'custrecord_omnirecon_ob_url',               // where it was sent (Free-Form Text)
            secretId: 'custrecord_omnirecon_ob_secret_id',    // the API Secret's script ID it was signed with
            attempts: 'custrecord_omnirecon_ob_attempts',     // posts made so far (Integer)
            firstAt: 'custrecord_omnirecon_ob_first_at',      // first attempt, unix seconds (Decimal)
            nextAt: 'custrecord_omnirecon_ob_next_at',        // next attempt no earlier than, unix seconds (Decimal)
            lastError: 'custrecord_omnirecon_ob_last_error',  // HTTP status or exception of the last attempt
            failed: 'custrecord_omnirecon_ob_failed'          // given up after MAX_AGE_S: kept for an administrator
        };
        const RETRY_SCRIPT = 'customscript_omnirecon_retry_mr';
        const RETRY_DEPLOYMENT = 'customdeploy_omnirecon_retry_mr';      // status Not Scheduled: on demand
        const FLUSH_PARAMETER = 'custscript_omnirecon_retry_flush';      // the run takes every queued message
        const BACKOFF_BASE_S = 60;
        const BACKOFF_CAP_S = 3600;
        const MAX_AGE_S = 72 * 3600;

        const nowSeconds = () => Date.now() / 1000;

        // seconds to wait after the n-th failed attempt
        const backoffSeconds = (attempts) =>
            attempts <= 1 ? 0 : Math.min(BACKOFF_CAP_S, BACKOFF_BASE_S * Math.pow(2, attempts - 2));

        const sign = (secretId, text) => {
            const key = crypto.createSecretKey({secret: secretId, encoding: encode.Encoding.UTF_8});
            const hmac = crypto.createHmac({algorithm: crypto.HashAlg.SHA256, key: key});
            hmac.update({input: text, inputEncoding: encode.Encoding.UTF_8});
            return hmac.digest({outputEncoding: encode.Encoding.HEX}).toLowerCase();
        };

        // one signed POST -> {ok, error}; never throws
        const post = (url, secretId, body) => {
            try {
                const timestamp = String(Math.floor(Date.now() / 1000));
                const resp = https.post({
                    url: url, body: body, headers: {
                        'Content-Type': 'application/json', 'X-Omnirecon-Timestamp': timestamp,
                        'X-Omnirecon-Signature': 'sha256=' + sign(secretId, timestamp + '.' + body)
                    }
                });
                if (resp.code >= 200 && resp.code < 300) return {ok: true, error: null};
                return {ok: false, error: 'HTTP ' + resp.code};
            } catch (e) {
                return {ok: false, error: (e.name ? e.name + ': ' : '') + e.message};
            }
        };

        // a message whose post failed -> the outbox record's internal id
        const queue = ({eventId, body, url, secretId, error}) => {
            const now = nowSeconds();
            const rec = record.create({type: RECORD});
            rec.setValue({fieldId: 'name', value: eventId});
            rec.setValue({fieldId: FIELDS.eventId, value: eventId});
            rec.setValue({fieldId: FIELDS.body, value: body});
            rec.setValue({fieldId: FIELDS.url, value: url});
            rec.setValue({fieldId: FIELDS.secretId, value: secretId});
            rec.setValue({fieldId: FIELDS.attempts, value: 1});
            rec.setValue({fieldId: FIELDS.firstAt, value: now});
            rec.setValue({fieldId: FIELDS.nextAt, value: now + backoffSeconds(1)});
            rec.setValue({fieldId: FIELDS.lastError, value: String(error || '').slice(0, 300)});
            rec.setValue({fieldId: FIELDS.failed, value: false});
            return rec.save();
        };

        // ask for a run of the retry script; false when NetSuite refuses (one is already queued or running:
        // MAP_REDUCE_ALREADY_RUNNING), which is fine, that run or the scheduled one takes the message
        const requestRetry = (flush) => {
            try {
                task.create({
                    taskType: task.TaskType.MAP_REDUCE, scriptId: RETRY_SCRIPT, deploymentId: RETRY_DEPLOYMENT,
                    params: {[FLUSH_PARAMETER]: !!flush}
                }).submit();
                return true;
            } catch (e) {
                log.debug({title: 'omnirecon retry not submitted', details: (e.name || '') + ' ' + e.message});
                return false;
            }
        };

        // "the outbox has messages": set by afterSubmit when it queues one, so the next successful post (the
        // receiver is back) asks for a run that takes them all; a hint only (the scheduled run is the net)
        const hints = () => cache.getCache({name: 'omnirecon_outbox', scope: cache.Scope.PRIVATE});
        const markQueued = () => hints().put({key: 'queued', value: '1', ttl: 86400});
        const flushIfQueued = () => {
            if (hints().get({key: 'queued'}) === '1' && requestRetry(true)) hints().remove({key: 'queued'});
        };

        return {
            RECORD, FIELDS, BACKOFF_BASE_S, BACKOFF_CAP_S, MAX_AGE_S, FLUSH_PARAMETER,
            nowSeconds, backoffSeconds, sign, post, queue, requestRetry, markQueued, flushIfQueued
        };
    });
