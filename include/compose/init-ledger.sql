-- The ledger's own database beside Airflow's metadata DB (docker-compose only).
CREATE USER omnirecon WITH PASSWORD 'omnirecon';
CREATE DATABASE omnirecon OWNER omnirecon;
